/**
 * An HTTP proxy in front of a registry that misbehaves on command, and logs what it saw.
 *
 *   const proxy = await startFlakyProxy(reg.url);
 *   client baseUrl: proxy.url (reverse-proxy mode), or set http_proxy=proxy.url and use any
 *   host name: absolute-form requests (forward-proxy mode) all go to the registry too.
 *   proxy.dropBlobBodies(1);        // first blob GET: send part of the body, then cut the TCP connection
 *   proxy.stallBlobBodies(1);       // first blob GET: send part of the body, then go silent
 *   proxy.corruptBlobBodies(1);     // first blob GET: flip one byte in the middle of the body
 *   proxy.corruptManifests(1);      // first manifest GET: flip one byte in the middle of the body
 *   proxy.ignoreRange(true);        // strip Range from blob GETs (a server that ignores Range: 200 + full body)
 *   proxy.redirectBlobs(true);      // blob GETs: 307 to proxy.storageUrl (another port), like S3
 *   CONNECT host:port (https through https_proxy) opens a plain TCP tunnel to the upstream's
 *   host and port whatever name was asked for (so start it with the https registry's URL).
 *   proxy.requests                  // every request on the main port: method, url, headers, status
 *   proxy.storageRequests           // every request on the storage port
 *   await proxy.stop();
 *
 * "Blob GET" means GET /v2/<repo>/blobs/sha256:<hex> answered 200/206. Counters count down per
 * blob GET. The storage port serves a redirected blob by forwarding to the registry with the
 * Authorization of the request that was redirected (as a pre-signed URL would carry it), so the
 * client itself must not send one there.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import net, { type AddressInfo, type Socket } from 'node:net';

export interface ProxyRequestRecord {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  status?: number;
}

export interface FlakyProxy {
  url: string;
  host: string;
  storageUrl: string;
  requests: ProxyRequestRecord[];
  storageRequests: ProxyRequestRecord[];
  dropBlobBodies(count: number, afterBytes?: number): void;
  stallBlobBodies(count: number, afterBytes?: number): void;
  corruptBlobBodies(count: number): void;
  corruptManifests(count: number): void;
  ignoreRange(on: boolean): void;
  redirectBlobs(on: boolean): void;
  clearLog(): void;
  stop(): Promise<void>;
}

const BLOB_PATH = /^\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;

function pathOf(rawUrl: string): string {
  return new URL(rawUrl, 'http://proxy.invalid').pathname;
}

export async function startFlakyProxy(upstreamUrl: string): Promise<FlakyProxy> {
  const upstream = new URL(upstreamUrl);
  const requests: ProxyRequestRecord[] = [];
  const storageRequests: ProxyRequestRecord[] = [];
  let drop = { count: 0, after: -1 };
  let stall = { count: 0, after: -1 };
  let corrupt = 0;
  let corruptManifest = 0;
  let stripRange = false;
  let redirect = false;
  const tickets = new Map<string, string | undefined>();
  const sockets = new Set<Socket>();
  let storagePort = 0;

  type Mode = 'drop' | 'stall' | 'corrupt' | 'plain';
  const takeMode = (): Mode => {
    if (drop.count > 0) {
      drop.count--;
      return 'drop';
    }
    if (stall.count > 0) {
      stall.count--;
      return 'stall';
    }
    if (corrupt > 0) {
      corrupt--;
      return 'corrupt';
    }
    return 'plain';
  };

  const forward = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    record: ProxyRequestRecord,
    path: string,
    headers: http.IncomingHttpHeaders,
    blob: boolean,
  ) => {
    const up = http.request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path,
        agent: false,
        headers: { ...headers, host: upstream.host },
      },
      (upRes) => {
        record.status = upRes.statusCode;
        const ok = upRes.statusCode === 200 || upRes.statusCode === 206;
        let mode: Mode = blob && req.method === 'GET' && ok ? takeMode() : 'plain';
        if (!blob && req.method === 'GET' && ok && path.includes('/manifests/') && corruptManifest > 0) {
          corruptManifest--;
          mode = 'corrupt';
        }
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (mode === 'plain') {
          upRes.pipe(res);
          return;
        }
        const length = Number(upRes.headers['content-length'] ?? 0);
        const configured = mode === 'drop' ? drop.after : mode === 'stall' ? stall.after : -1;
        const cut = configured >= 0 ? configured : Math.max(1, Math.floor(length / 2));
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          if (mode === 'corrupt') {
            if (sent <= cut && cut < sent + chunk.length) {
              chunk = Buffer.from(chunk);
              chunk[cut - sent] ^= 0xff;
            }
            sent += chunk.length;
            res.write(chunk);
            return;
          }
          if (sent >= cut) return;
          const part = chunk.subarray(0, cut - sent);
          sent += part.length;
          if (sent < cut) {
            res.write(part);
            return;
          }
          upRes.destroy();
          // Cut the connection only once the bytes before the cut have left, so the client gets exactly `cut`.
          res.write(part, () => {
            if (mode === 'drop') setTimeout(() => res.socket?.destroy(), 20);
          });
        });
        upRes.on('end', () => {
          if (mode === 'corrupt') res.end();
        });
      },
    );
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  };

  const main = http.createServer((req, res) => {
    const record: ProxyRequestRecord = { method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } };
    requests.push(record);
    const u = new URL(req.url ?? '/', 'http://proxy.invalid');
    const path = `${u.pathname}${u.search}`;
    const blob = BLOB_PATH.test(u.pathname);
    if (blob && req.method === 'GET' && redirect) {
      const ticket = randomBytes(8).toString('hex');
      tickets.set(ticket, req.headers.authorization);
      record.status = 307;
      res.writeHead(307, {
        location: `http://127.0.0.1:${storagePort}${u.pathname}?ticket=${ticket}`,
        'content-length': '0',
      });
      res.end();
      return;
    }
    const headers = { ...req.headers };
    if (blob && stripRange) delete headers.range;
    forward(req, res, record, path, headers, blob);
  });

  main.on('connect', (req: http.IncomingMessage, client: Socket, head: Buffer) => {
    requests.push({ method: 'CONNECT', url: req.url ?? '', headers: { ...req.headers }, status: 200 });
    sockets.add(client);
    const up = net.connect(Number(upstream.port), upstream.hostname, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) up.write(head);
      up.pipe(client);
      client.pipe(up);
    });
    sockets.add(up);
    up.on('error', () => client.destroy());
    client.on('error', () => up.destroy());
    up.on('close', () => {
      sockets.delete(up);
      client.destroy();
    });
    client.on('close', () => {
      sockets.delete(client);
      up.destroy();
    });
  });

  const storage = http.createServer((req, res) => {
    const record: ProxyRequestRecord = { method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } };
    storageRequests.push(record);
    const u = new URL(req.url ?? '/', 'http://storage.invalid');
    const ticket = u.searchParams.get('ticket') ?? '';
    if (!tickets.has(ticket)) {
      record.status = 403;
      res.writeHead(403).end();
      return;
    }
    const headers: http.IncomingHttpHeaders = { ...req.headers };
    delete headers.authorization;
    const granted = tickets.get(ticket);
    if (granted) headers.authorization = granted;
    forward(req, res, record, pathOf(req.url ?? '/'), headers, true);
  });

  for (const s of [main, storage])
    s.on('connection', (sock: Socket) => {
      sockets.add(sock);
      sock.on('close', () => sockets.delete(sock));
    });
  await new Promise<void>((resolve) => main.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
  const port = (main.address() as AddressInfo).port;
  storagePort = (storage.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    storageUrl: `http://127.0.0.1:${storagePort}`,
    requests,
    storageRequests,
    dropBlobBodies(count, afterBytes = -1) {
      drop = { count, after: afterBytes };
    },
    stallBlobBodies(count, afterBytes = -1) {
      stall = { count, after: afterBytes };
    },
    corruptBlobBodies(count) {
      corrupt = count;
    },
    corruptManifests(count) {
      corruptManifest = count;
    },
    ignoreRange(on) {
      stripRange = on;
    },
    redirectBlobs(on) {
      redirect = on;
    },
    clearLog() {
      requests.length = 0;
      storageRequests.length = 0;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await Promise.all([main, storage].map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    },
  };
}
