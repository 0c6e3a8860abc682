/**
 * A deliberately bad HTTP client on a raw socket: it sends what it is told (optionally trickled),
 * from a chosen loopback address, and reports what came back and when the server closed. Every
 * socket is destroyed at `giveUpMs` at the latest, so a test never hangs on a server that holds on.
 */
import { connect } from 'node:net';

export interface RawExchange {
  /** Everything the server sent. */
  response: string;
  /** ms from connect to the server's close, or null if we gave up first. */
  closedAfterMs: number | null;
}

export interface RawOptions {
  port: number;
  localAddress?: string;
  /** Sent at once after connecting. */
  data?: string;
  /** Then one byte of this every `trickleMs`. */
  trickle?: string;
  trickleMs?: number;
  giveUpMs: number;
}

export interface RawConnection {
  /** Resolves when the connection is established. */
  connected: Promise<void>;
  done: Promise<RawExchange>;
  close(): void;
}

export function rawConnect(o: RawOptions): RawConnection {
  const socket = connect({
    port: o.port,
    host: '127.0.0.1',
    ...(o.localAddress ? { localAddress: o.localAddress } : {}),
  });
  let response = '';
  let started = Date.now();
  let trickleTimer: NodeJS.Timeout | undefined;
  const connected = new Promise<void>((resolve, reject) => {
    socket.once('connect', () => {
      started = Date.now();
      if (o.data) socket.write(o.data);
      const rest = [...(o.trickle ?? '')];
      if (rest.length > 0) {
        trickleTimer = setInterval(() => {
          const c = rest.shift();
          if (c === undefined || socket.destroyed) clearInterval(trickleTimer);
          else socket.write(c);
        }, o.trickleMs ?? 500);
      }
      resolve();
    });
    socket.once('error', reject);
  });
  connected.catch(() => undefined);
  const done = new Promise<RawExchange>((resolve) => {
    const giveUp = setTimeout(() => socket.destroy(), o.giveUpMs);
    let serverClosed = false;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      response += d;
    });
    socket.on('end', () => {
      serverClosed = true;
    });
    socket.on('error', () => {
      serverClosed = true;
    });
    socket.once('close', () => {
      clearTimeout(giveUp);
      clearInterval(trickleTimer);
      resolve({ response, closedAfterMs: serverClosed ? Date.now() - started : null });
    });
  });
  return { connected, done, close: () => socket.destroy() };
}

/** Status, headers and JSON body of the first HTTP answer in `raw`. */
export function parseAnswer(raw: string): { status: number; headers: Record<string, string>; body: unknown } {
  const end = raw.indexOf('\r\n\r\n');
  const head = end < 0 ? raw : raw.slice(0, end);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  let body: unknown = null;
  try {
    body = JSON.parse(end < 0 ? '' : raw.slice(end + 4));
  } catch {
    body = null;
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1] ?? 0), headers, body };
}
