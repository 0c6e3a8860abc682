/**
 * A stand-in for the image gateway, speaking upstream's REST routes on a random loopback port,
 * with answers the test sets and every request it got recorded. It exists because the real
 * gateway is being written at the same time; it checks nothing about the credential itself
 * (the tests decode it with a real munged).
 */
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  rawUrl: string;
  route: string;
  system: string;
  type?: string;
  tag?: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export interface Reply {
  status: number;
  body: unknown;
}

export interface GatewayScript {
  system: string;
  list?: unknown[];
  queue?: unknown[];
  /** `type:tag` → record returned by lookup. */
  lookup?: Record<string, unknown>;
  /** `type:tag` → records returned by successive POSTs (the last one repeats). */
  pull?: Record<string, unknown[]>;
  /** Answer every request with this instead (500s, 401s, ...). */
  override?: Reply;
}

export interface GatewayDouble {
  url: string;
  requests: RecordedRequest[];
  script: GatewayScript;
  stop(): Promise<void>;
}

function notFound(url: string, error: string): Reply {
  return { status: 404, body: { status: 404, error, message: `Not Found: ${url}` } };
}

function answer(script: GatewayScript, req: RecordedRequest, pullCounts: Map<string, number>): Reply {
  if (script.override) return script.override;
  if (req.system !== script.system) return notFound(req.rawUrl, 'Bad session or system');
  const key = `${req.type}:${req.tag}`;
  switch (`${req.method} ${req.route}`) {
    case 'GET list':
      return { status: 200, body: { list: script.list ?? [] } };
    case 'GET queue':
      return { status: 200, body: { list: script.queue ?? [] } };
    case 'GET lookup': {
      const r = script.lookup?.[key];
      return r ? { status: 200, body: r } : notFound(req.rawUrl, `image ${key} not found`);
    }
    case 'POST pull': {
      const seq = script.pull?.[key];
      if (!seq || seq.length === 0) return notFound(req.rawUrl, `cannot pull ${key}`);
      const n = pullCounts.get(key) ?? 0;
      pullCounts.set(key, n + 1);
      return { status: 200, body: seq[Math.min(n, seq.length - 1)] };
    }
    default:
      return notFound(req.rawUrl, 'no such route');
  }
}

/** Where the double listens: a random port on 127.0.0.1 unless the test needs a given one. */
export interface ListenAt {
  host: string;
  port: number;
}

export async function startGatewayDouble(
  script: GatewayScript,
  at: ListenAt = { host: '127.0.0.1', port: 0 },
): Promise<GatewayDouble> {
  const requests: RecordedRequest[] = [];
  const pullCounts = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (d: string) => {
      body += d;
    });
    req.on('end', () => {
      const rawUrl = req.url ?? '';
      // /api/<route>/<system>/[<type>/<tag...>/]
      const parts = rawUrl
        .split('?')[0]
        .replace(/^\/api\//, '')
        .replace(/\/$/, '')
        .split('/');
      const [route = '', system = '', type, ...tagParts] = parts.map(decodeURIComponent);
      const rec: RecordedRequest = {
        method: req.method ?? '',
        rawUrl,
        route,
        system,
        headers: req.headers,
        body,
        ...(type !== undefined ? { type, tag: tagParts.join('/') } : {}),
      };
      requests.push(rec);
      const reply = answer(script, rec, pullCounts);
      res.writeHead(reply.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(reply.body));
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(at.port, at.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${at.host}:${port}`,
    requests,
    script,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}
