/**
 * Registries that never work, on loopback, for failure-path tests:
 *
 *   const broken = await startFaultyRegistry('always-500');  // every request: HTTP 500 with a registry error body
 *   const silent = await startFaultyRegistry('silent');      // accepts TCP connections, never sends a byte
 *   const closed = await startFaultyRegistry('closed');      // a port nobody listens on
 *   broken.url  // http://127.0.0.1:PORT     broken.host  // 127.0.0.1:PORT
 *   broken.requests / silent.connections    // what reached it
 *   await broken.stop();                    // closes the server and every connection it holds
 */
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { freePort } from './registry.js';

export type FaultMode = 'always-500' | 'silent' | 'closed';

export interface FaultyRegistry {
  url: string;
  host: string;
  port: number;
  /** HTTP requests answered (always-500). */
  requests: string[];
  /** TCP connections accepted. */
  connections: number;
  stop(): Promise<void>;
}

export async function startFaultyRegistry(mode: FaultMode): Promise<FaultyRegistry> {
  if (mode === 'closed') {
    const port = await freePort();
    return {
      url: `http://127.0.0.1:${port}`,
      host: `127.0.0.1:${port}`,
      port,
      requests: [],
      connections: 0,
      stop: async () => undefined,
    };
  }
  const sockets = new Set<Socket>();
  const requests: string[] = [];
  const server: net.Server =
    mode === 'always-500'
      ? http.createServer((req, res) => {
          requests.push(`${req.method} ${req.url}`);
          res.writeHead(500, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: 'storage backend unavailable' }] }));
        })
      : net.createServer();
  const state = { connections: 0 };
  server.on('connection', (s: Socket) => {
    state.connections++;
    sockets.add(s);
    s.on('error', () => undefined);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    port,
    requests,
    get connections() {
      return state.connections;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
