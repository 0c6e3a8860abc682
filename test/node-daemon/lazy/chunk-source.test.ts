/**
 * The chunk source against real HTTP servers. Node tokens as the gateway issues them: one munge
 * exchange serves many requests, a token the server no longer accepts (the gateway restarted) gets
 * one fresh exchange and the request is answered. Retries within the deadline (503 + Retry-After,
 * 502, 504, resets), caches before gateways with fallback and cool-down, 404 final, and the
 * rate-limited log of which source served.
 */
import test, { type ExecutionContext } from 'ava';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ShifterError } from '../../../common/errors.js';
import type { ImageId } from '../../../common/image-descriptor.js';
import type { Logger } from '../../../common/logger.js';
import { ChunkSource } from '../../../node-daemon/lazy/chunk-source.js';

const ID = 'a'.repeat(64) as ImageId;
const DIGEST = 'b'.repeat(64);

async function tokenServer(t: { teardown: (f: () => Promise<void>) => void }) {
  const state = { valid: '', issued: 0, sessionCredentials: [] as string[] };
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/api/chunks/sys/session') {
      state.sessionCredentials.push(String(req.headers.authentication));
      state.valid = `token-${++state.issued}`;
      const body = JSON.stringify({ token: state.valid, expires: Math.floor(Date.now() / 1000) + 3600 });
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    }
    if (req.headers.authorization !== `Bearer ${state.valid}`) {
      return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
    }
    res.writeHead(200).end('chunk bytes');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state };
}

test('one munge exchange serves every request; a token no longer accepted is exchanged once more', async (t) => {
  const { url, state } = await tokenServer(t);
  let made = 0;
  const source = new ChunkSource({
    bases: [url],
    system: 'sys',
    credential: () => Promise.resolve(`munge-credential-${++made}`),
  });
  const got = await Promise.all([1, 2, 3, 4].map(() => source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))));
  t.deepEqual(
    got.map((b) => b.toString()),
    Array(4).fill('chunk bytes'),
  );
  t.deepEqual(state.sessionCredentials, ['munge-credential-1']);

  state.valid = 'the gateway restarted';
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'chunk bytes');
  t.deepEqual(state.sessionCredentials, ['munge-credential-1', 'munge-credential-2']);
});

test('a gateway refusing the node credential: the error names the base and the session answer', async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":"only root on a compute node"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const source = new ChunkSource({ bases: [url], system: 'sys', credential: () => Promise.resolve('cred') });
  const e = await t.throwsAsync(source.chunk(ID, DIGEST, AbortSignal.timeout(10_000)));
  t.is(
    e?.message,
    `cannot fetch chunk ${DIGEST} of image ${ID}: ${url} (no node token: HTTP 403 only root on a compute node)`,
  );
});

interface Scripted {
  url: string;
  /** `METHOD path` of every request, in order. */
  requests: string[];
}

type Handler = (req: IncomingMessage, res: ServerResponse, n: number) => void;

/** An HTTP server answering with `handler` (n: the request's number, from 1). */
async function scripted(t: ExecutionContext, handler: Handler): Promise<Scripted> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res, requests.length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const chunkPath = `/api/chunks/sys/${ID}/chunk/${DIGEST}`;
const fast = { baseBackoffMs: 50, maxBackoffMs: 200, maxRetryAfterMs: 3000, coolDownMs: 60_000 };

/** A port nothing listens on any more: connections to it are refused. */
async function refusingUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

test('a 503 with Retry-After is waited out and retried; the answer comes within the deadline', async (t) => {
  const gw = await scripted(t, (_req, res, n) => {
    if (n === 1) return void res.writeHead(503, { 'retry-after': '1' }).end('{"error":"queue full"}');
    res.writeHead(200).end('chunk bytes');
  });
  const source = new ChunkSource({ bases: [gw.url], system: 'sys', retry: fast, random: () => 0 });
  const started = Date.now();
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(20_000))).toString(), 'chunk bytes');
  t.true(Date.now() - started >= 950, `answered after ${Date.now() - started} ms, before Retry-After`);
  t.deepEqual(gw.requests, [`GET ${chunkPath}`, `GET ${chunkPath}`]);
});

test('502, 504 and a reset connection are retried with backoff until the source answers', async (t) => {
  const gw = await scripted(t, (req, res, n) => {
    if (n === 1) return void res.writeHead(502).end();
    if (n === 2) return void res.writeHead(504).end();
    if (n === 3) return void req.socket.destroy();
    res.writeHead(200).end('chunk bytes');
  });
  const source = new ChunkSource({ bases: [gw.url], system: 'sys', retry: fast });
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(20_000))).toString(), 'chunk bytes');
  t.is(gw.requests.length, 4);
});

test('a source that keeps failing ends in UNREACHABLE at the deadline, naming it and why', async (t) => {
  const gw = await scripted(t, (_req, res) => void res.writeHead(503, { 'retry-after': '1' }).end());
  const source = new ChunkSource({ bases: [gw.url], system: 'sys', retry: fast });
  const started = Date.now();
  const e = await t.throwsAsync(source.chunk(ID, DIGEST, AbortSignal.timeout(2500)));
  const took = Date.now() - started;
  t.true(took >= 2400 && took < 8000, `${took} ms`);
  t.regex(
    e?.message ?? '',
    new RegExp(
      `^cannot fetch chunk ${DIGEST} of image ${ID}: ${gw.url} \\(HTTP 503\\); gave up after \\d+ rounds \\(lazyChunkTimeout\\)$`,
    ),
  );
  t.true(gw.requests.length >= 2 && gw.requests.length <= 4, `${gw.requests.length} requests`);
});

test('caches first for chunk GETs; a failed one is set aside for its cool-down, then asked again', async (t) => {
  let cacheUp = false;
  const cache = await scripted(t, (_req, res) => {
    if (!cacheUp) return void res.writeHead(502).end();
    res.writeHead(200).end('from the cache');
  });
  const gw = await tokenServer(t);
  const source = new ChunkSource({
    bases: [gw.url],
    caches: [cache.url],
    system: 'sys',
    credential: () => Promise.resolve('munge-credential'),
    retry: { ...fast, coolDownMs: 1500 },
  });
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'chunk bytes');
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'chunk bytes');
  t.is(cache.requests.length, 1, 'the failed cache is not asked again during its cool-down');
  cacheUp = true;
  await new Promise((r) => setTimeout(r, 1700));
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'from the cache');
  t.is(cache.requests.length, 2);
  t.deepEqual(gw.state.sessionCredentials, ['munge-credential'], 'the session exchange goes to the gateway only');
  t.false(cache.requests.some((r) => r.startsWith('POST')));
});

test('the image facts and profile PUTs go to the gateways only; a refused cache connection falls back', async (t) => {
  const gw = await scripted(t, (req, res) => {
    if (req.method === 'PUT') return void res.writeHead(201).end();
    const facts = { id: ID, indexDigest: DIGEST, meta: 'FORMAT: squashfs\n' };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(facts));
  });
  const cache = await scripted(t, (_req, res) => void res.writeHead(200).end('cached'));
  const dead = await refusingUrl();
  const source = new ChunkSource({ bases: [gw.url], caches: [dead, cache.url], system: 'sys', retry: fast });
  t.is((await source.facts(ID, AbortSignal.timeout(10_000))).indexDigest, DIGEST);
  t.is(await source.putProfile(ID, Buffer.from('{}'), AbortSignal.timeout(10_000)), 'stored');
  t.deepEqual(cache.requests, []);
  t.is((await source.index(ID, AbortSignal.timeout(10_000))).toString(), 'cached');
  t.deepEqual(cache.requests, [`GET /api/chunks/sys/${ID}/index`]);
  t.is(gw.requests.length, 2);
});

test('a 404 is final: no other source is asked', async (t) => {
  const cache = await scripted(t, (_req, res) => void res.writeHead(404).end());
  const gw = await scripted(t, (_req, res) => void res.writeHead(200).end('chunk bytes'));
  const source = new ChunkSource({ bases: [gw.url], caches: [cache.url], system: 'sys', retry: fast });
  const e = await t.throwsAsync(source.chunk(ID, DIGEST, AbortSignal.timeout(10_000)));
  t.is((e as ShifterError).code, 'NOT_FOUND');
  t.deepEqual(gw.requests, []);
});

test('a cache passing on a 401 (the gateway restarted): a fresh token from the gateway, and the cache serves', async (t) => {
  const gw = await tokenServer(t);
  const cache = await scripted(t, (req, res) => {
    if (req.headers.authorization !== `Bearer ${gw.state.valid}`) return void res.writeHead(401).end();
    res.writeHead(200).end('from the cache');
  });
  const source = new ChunkSource({
    bases: [gw.url],
    caches: [cache.url],
    system: 'sys',
    credential: () => Promise.resolve('cred'),
    retry: fast,
  });
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'from the cache');
  gw.state.valid = 'the gateway restarted';
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'from the cache');
  t.is(gw.state.issued, 2);
});

test('which source served and which failed is logged once per change, not once per chunk', async (t) => {
  const cache = await scripted(t, (_req, res) => void res.writeHead(502).end());
  const gw = await scripted(t, (_req, res) => void res.writeHead(200).end('chunk bytes'));
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  const capture = (level: string) => (fields: Record<string, unknown>, msg: string) =>
    lines.push({ level, fields, msg });
  const log = { info: capture('info'), warn: capture('warn') } as unknown as Logger;
  const source = new ChunkSource({
    bases: [gw.url],
    caches: [cache.url],
    system: 'sys',
    log,
    retry: { ...fast, coolDownMs: 0 },
  });
  for (let n = 0; n < 20; n++) await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000));
  t.is(cache.requests.length, 20, 'with no cool-down the cache is asked every time');
  t.deepEqual(
    lines.map((l) => [l.level, l.msg, l.fields.source]),
    [
      ['warn', 'chunk source failed; set aside for a cool-down', cache.url],
      ['info', 'chunks now come from this source', gw.url],
    ],
  );
  t.is(lines[0].fields.err, 'HTTP 502');
  t.is(lines[0].fields.next, gw.url);
});
