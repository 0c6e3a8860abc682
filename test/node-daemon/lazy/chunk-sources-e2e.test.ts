/**
 * Where a node's chunks come from when parts fail, end to end with the real parts: the real gateway
 * (munge, a munged of its own, an image pulled from a real registry), real shifterd with lazy
 * images, real nginx caches. A two-level layout (per-rack cache -> site cache -> gateway) serves a
 * second node's cold start without one chunk answer from the gateway; a cache killed during a cold
 * start, the gateway restarted during one, and a gateway answering 503 + Retry-After: the node
 * falls back or retries and the command completes.
 * "During a cold start" is made exact by a small HTTP front (`front`) between the node and the
 * part that fails: it acts on the first chunk request it sees.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import type { ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mungeEncode } from '../../../common/munge.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { startNginxCache } from '../../helpers/nginx-cache.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { ShifterdFixture, ensureTestUser } from '../runtime-fixture.js';

ensureTestUser();
const OS_RELEASE = 'NAME="Cached Linux"\nVERSION_ID="12"\n';
const gwDir = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let munged: Munged | undefined;
let gw: RunningGateway | undefined;
let gwConfig: object = {};

test.before(async () => {
  reg = await startRegistry();
  munged = await startMunged();
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
      { name: 'etc/os-release', content: OS_RELEASE, mode: 0o644 },
      { name: 'data/blob', content: randomBytes(8 * 1024 * 1024), mode: 0o644 },
    ]),
  );
  await pushImage(reg.url, 'team/cached', '1.0', {
    layers: [layer],
    config: imageConfig({ Env: ['PATH=/bin'], Cmd: ['cat', '/etc/os-release'] }),
  });
  const gwImageDir = join(gwDir.dir, 'gw-images');
  mkdirSync(gwImageDir, { mode: 0o755 });
  gwConfig = {
    CacheDirectory: join(gwDir.dir, 'gw-cache'),
    ExpandDirectory: join(gwDir.dir, 'gw-expand'),
    Authentication: 'munge',
    WorkerThreads: 1,
    DefaultImageLocation: 'site',
    Locations: { site: { url: reg.url } },
    Platforms: {
      testsys: {
        accesstype: 'local',
        local: { imageDir: gwImageDir },
        mungeSocketPath: munged.socket,
        admins: ['root'],
      },
    },
  };
  gw = await startGateway({ dir: gwDir.dir, config: gwConfig });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${gw.url}/api/pull/testsys/docker/team/cached:1.0/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authentication: await mungeEncode('', { socket: munged.socket }) },
      body: '{}',
    });
    const rec = (await res.json()) as { status?: string };
    if (rec.status === 'READY') break;
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

test.after.always(async () => {
  await gw?.stop();
  await munged?.stop();
  await reg?.stop();
  await gwDir.cleanup();
});

/** A node: shifterd with lazy images from `gateway`, asking `caches` first. */
async function node(t: ExecutionContext, gateway: string, caches: string[] = []) {
  const fx = new ShifterdFixture();
  t.teardown(() => fx.cleanup());
  fx.writeConfig([
    `imageGateway=${gateway}`,
    ...(caches.length > 0 ? [`lazyChunkCaches=${caches.join(',')}`] : []),
    'system=testsys',
    `mungeSocketPath=${munged!.socket}`,
    `lazyImageCache=${join(fx.dir, 'lazycache')}`,
    'lazyImageCacheSize=1g',
    // Generous: a loaded CI machine, and retries that wait out a restart or a Retry-After.
    'lazyChunkTimeout=90',
  ]);
  await fx.start();
  return fx;
}

async function coldStart(t: ExecutionContext, fx: ShifterdFixture): Promise<void> {
  const r = await fx.run(['--image=team/cached:1.0', 'cat', '/etc/os-release']);
  t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
  t.is(r.stdout, OS_RELEASE);
}

/** The gateway's lazy-cache answers so far, by route (its /metrics). */
async function gatewayAnswers(gateway: RunningGateway): Promise<Record<string, number>> {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^shifter_gateway_chunk_answers_total\{route="(\w+)"\} (\d+)/gm))
    out[m[1]] = Number(m[2]);
  return out;
}

interface Front {
  url: string;
  /** Where requests go now. */
  upstream: string;
  /** Chunk GETs seen. */
  chunkRequests: number;
}

/**
 * An HTTP front passing requests to `upstream`; `onChunk(n, req, res)` sees each chunk GET first
 * and may answer it itself (returns true) or act and let it pass. An upstream that cannot be
 * reached resets the node's connection, as a dead host would.
 */
async function front(
  t: ExecutionContext,
  upstream: string,
  onChunk: (n: number, res: ServerResponse) => Promise<boolean> = () => Promise.resolve(false),
): Promise<Front & { close(): void }> {
  const sockets = new Set<Socket>();
  const state = { url: '', upstream, chunkRequests: 0 };
  const pass = async (req: IncomingMessage, res: ServerResponse, body: Buffer | undefined) => {
    if (/\/chunk\/[0-9a-f]{64}$/.test(req.url ?? '') && (await onChunk(++state.chunkRequests, res))) return;
    const headers = Object.fromEntries(
      Object.entries(req.headers).filter(([k, v]) => k !== 'host' && k !== 'connection' && typeof v === 'string'),
    ) as Record<string, string>;
    try {
      const up = await fetch(new URL(req.url ?? '/', state.upstream), { method: req.method, headers, body });
      const bytes = Buffer.from(await up.arrayBuffer());
      const keep = ['content-type', 'retry-after', 'etag', 'cache-control'];
      res.writeHead(
        up.status,
        Object.fromEntries(keep.flatMap((k) => (up.headers.has(k) ? [[k, up.headers.get(k)!]] : []))),
      );
      res.end(bytes);
    } catch {
      req.socket.destroy();
    }
  };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => void pass(req, res, parts.length > 0 ? Buffer.concat(parts) : undefined));
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    server.close();
    for (const s of sockets) s.destroy();
  };
  t.teardown(close);
  return Object.assign(state, { close });
}

test.serial('two cache levels: a second node cold-starts with no chunk answer from the gateway', async (t) => {
  const site = await startNginxCache(gw!.url);
  t.teardown(() => site.stop());
  const rack = await startNginxCache(site.url);
  t.teardown(() => rack.stop());
  await coldStart(t, await node(t, gw!.url, [rack.url]));
  const afterFirst = await gatewayAnswers(gw!);
  t.true(afterFirst.chunk > 0, JSON.stringify(afterFirst));
  await coldStart(t, await node(t, gw!.url, [rack.url]));
  const afterSecond = await gatewayAnswers(gw!);
  t.is(afterSecond.chunk, afterFirst.chunk, 'no chunk answer from the gateway for the second node');
  t.is(afterSecond.index, afterFirst.index, 'nor the index');
  t.is(afterSecond.facts, afterFirst.facts + 1, 'the image facts (no-store) come from the gateway');
  const rackHits = (await rack.accessLog())
    .split('\n')
    .filter((l) => / \/api\/chunks\/\S+\/chunk\/\S+ 200 HIT$/.test(l));
  t.true(rackHits.length > 0, 'the second node was served from the rack cache');
});

test.serial('a cache killed during a cold start: the node falls back to the next source and completes', async (t) => {
  const rack = await startNginxCache(gw!.url);
  t.teardown(() => rack.stop());
  const site = await startNginxCache(gw!.url);
  t.teardown(() => site.stop());
  const rackFront = await front(t, rack.url, async (n) => {
    if (n !== 2) return false;
    // The rack cache's host dies: its nginx is killed, its address refuses from now on.
    rackFront.close();
    await rack.kill();
    return true;
  });
  const fx = await node(t, gw!.url, [rackFront.url, site.url]);
  await coldStart(t, fx);
  t.true(rackFront.chunkRequests >= 2);
  t.regex(fx.log, new RegExp(`"source":"${rackFront.url}".*chunk source failed; set aside for a cool-down`));
  const siteChunks = (await site.accessLog()).split('\n').filter((l) => /\/chunk\/[0-9a-f]{64} 200 /.test(l));
  t.true(siteChunks.length > 0, 'the site cache served what the rack cache could not');
});

test.serial('the gateway restarted during a cold start: the node retries with a new token and completes', async (t) => {
  let restarted: RunningGateway | undefined;
  const gwFront = await front(t, gw!.url, async (n) => {
    if (n !== 1) return false;
    await gw!.kill9();
    // Back after a while on a new port behind the same address (a restart behind a service name).
    setTimeout(() => {
      void startGateway({ dir: gwDir.dir, config: gwConfig }).then((g) => {
        restarted = g;
        gw = g;
        gwFront.upstream = g.url;
      });
    }, 2000);
    return false;
  });
  const fx = await node(t, gwFront.url);
  const started = Date.now();
  await coldStart(t, fx);
  t.truthy(restarted, 'the command completed through the restarted gateway');
  t.true(Date.now() - started >= 2000);
  t.regex(fx.log, /chunk source failed; set aside for a cool-down/);
  const chunks = (await gatewayAnswers(restarted!)).chunk;
  t.true(chunks > 0, 'the restarted gateway served chunks (with a token it issued)');
});

test.serial('a gateway answering 503 + Retry-After: the node waits and completes', async (t) => {
  const gwFront = await front(t, gw!.url, async (n, res) => {
    if (n > 3) return false;
    res.writeHead(503, { 'retry-after': '2', 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: 503, error: 'the gateway is serving 64 chunk answers; retry in 2 s' }));
    return true;
  });
  const fx = await node(t, gwFront.url);
  const started = Date.now();
  await coldStart(t, fx);
  t.true(Date.now() - started >= 2000, 'the node waited Retry-After');
  t.true(gwFront.chunkRequests > 3);
  t.regex(fx.log, /"err":"HTTP 503".*chunk source failed/);
});
