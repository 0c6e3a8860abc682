/**
 * Caps open connections per client address and in all, so one client (or one broken script) cannot
 * take every file descriptor while others wait. A connection over a cap gets a 503 in the one
 * error shape and is closed; it never reaches the HTTP parser, so no request on it is handled.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { rawErrorResponse, UNREAD_URL } from './response.js';

export interface ConnectionCaps {
  maxConnectionsPerAddress: number;
  maxConnections: number;
}

/** Counts open connections by address; `admit` says whether one more may open. Pure. */
export class ConnectionCounter {
  private readonly byAddress = new Map<string, number>();
  private total = 0;

  constructor(private readonly caps: ConnectionCaps) {}

  /** Returns why the connection is refused, or null after counting it as open. */
  admit(address: string): string | null {
    const open = this.byAddress.get(address) ?? 0;
    if (this.total >= this.caps.maxConnections) {
      return `the gateway has ${this.total} open connections, its limit (MaxConnections); retry in a moment`;
    }
    if (open >= this.caps.maxConnectionsPerAddress) {
      return (
        `${address} already has ${open} open connections, the limit per client address ` +
        '(MaxConnectionsPerAddress); close some or retry in a moment'
      );
    }
    this.byAddress.set(address, open + 1);
    this.total++;
    return null;
  }

  release(address: string): void {
    const open = this.byAddress.get(address) ?? 0;
    if (open <= 1) this.byAddress.delete(address);
    else this.byAddress.set(address, open - 1);
    this.total = Math.max(0, this.total - 1);
  }
}

/** How long a refused socket may linger so the 503 reaches the client before the close. */
const REFUSED_LINGER_MS = 1000;

/**
 * Puts the counter in front of the HTTP server's own connection handling. The server's listener is
 * wrapped rather than joined because listeners cannot stop each other: a refused socket must not
 * be parsed at all.
 */
export function limitConnections(
  server: Server,
  caps: ConnectionCaps,
  onRefused: (address: string, why: string) => void,
): void {
  const counter = new ConnectionCounter(caps);
  const httpListeners = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const why = counter.admit(address);
    if (why !== null) {
      onRefused(address, why);
      socket.on('error', () => undefined);
      socket.end(rawErrorResponse(503, why, UNREAD_URL, ['Retry-After: 1']));
      setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
      return;
    }
    socket.once('close', () => counter.release(address));
    for (const listener of httpListeners) listener.call(server, socket);
  });
}
