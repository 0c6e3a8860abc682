/**
 * The lazy image cache end to end with the real parts: an image pushed to a real registry and
 * pulled by the real gateway (munge authentication, a munged of its own) into the gateway's
 * image directory only; shifterd with lazyImageCache and an empty imagePath launches it as an
 * ordinary user through the FUSE server, which fetches the index and the chunks it reads from
 * the gateway's chunk routes with a node token (one exchange of a munge credential made as root).
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mungeEncode } from '../../../common/munge.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { startNginxCache } from '../../helpers/nginx-cache.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { ShifterdFixture, ensureTestUser } from '../runtime-fixture.js';
import { storedChunks } from './lazy-gateway-fixture.js';
import { waitFor } from './lazy-fixture.js';

ensureTestUser();
const OS_RELEASE = 'NAME="Lazy Linux"\nVERSION_ID="7"\n';
const gwImages = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let munged: Munged | undefined;
let gw: RunningGateway | undefined;
let imageId = '';

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
      // Incompressible and never read by the job: the chunks a lazy start must not fetch.
      { name: 'data/blob', content: randomBytes(12 * 1024 * 1024), mode: 0o644 },
    ]),
  );
  await pushImage(reg.url, 'team/lazy', '1.0', {
    layers: [layer],
    config: imageConfig({ Env: ['PATH=/bin'], Cmd: ['cat', '/etc/os-release'] }),
  });
  const gwImageDir = join(gwImages.dir, 'gw-images');
  mkdirSync(gwImageDir, { mode: 0o755 });
  gw = await startGateway({
    dir: gwImages.dir,
    config: {
      CacheDirectory: join(gwImages.dir, 'gw-cache'),
      ExpandDirectory: join(gwImages.dir, 'gw-expand'),
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
    },
  });
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${gw.url}/api/pull/testsys/docker/team/lazy:1.0/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authentication: await mungeEncode('', { socket: munged.socket }) },
      body: '{}',
    });
    const rec = (await res.json()) as { status?: string; id?: string };
    if (rec.status === 'READY' && typeof rec.id === 'string') {
      imageId = rec.id;
      break;
    }
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
});

test.after.always(async () => {
  await gw?.stop();
  await munged?.stop();
  await reg?.stop();
  await gwImages.cleanup();
});

/** A shifterd whose imagePath is empty and whose images all come lazily from `gateway`. */
async function lazyShifterd(t: { teardown: (f: () => Promise<void>) => void }, gateway: string) {
  const fx = new ShifterdFixture();
  t.teardown(() => fx.cleanup());
  const cacheDir = join(fx.dir, 'lazycache');
  fx.writeConfig([
    `imageGateway=${gateway}`,
    'system=testsys',
    `mungeSocketPath=${munged!.socket}`,
    `lazyImageCache=${cacheDir}`,
    'lazyImageCacheSize=1g',
    'lazyChunkTimeout=20',
  ]);
  await fx.start();
  return { fx, cacheDir };
}

test.serial('a pulled image runs lazily from the gateway: only the chunks it reads are fetched', async (t) => {
  const { fx, cacheDir } = await lazyShifterd(t, gw!.url);
  t.deepEqual(
    readdirSync(fx.imagePath).filter((f) => f.startsWith(imageId)),
    [],
  );
  const r = await fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
  t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
  t.is(r.stdout, OS_RELEASE);
  const facts = (await (
    await fetch(`${gw!.url}/api/chunks/testsys/${imageId}`, {
      headers: { authentication: await mungeEncode('', { socket: munged!.socket }) },
    })
  ).json()) as { chunkCount: number };
  const stored = storedChunks(cacheDir).length;
  t.log(`${stored} of ${facts.chunkCount} chunks fetched`);
  t.true(stored > 0, 'the chunks read are kept in the chunk store');
  t.true(stored < facts.chunkCount, `${stored} of ${facts.chunkCount} chunks fetched`);
});

test.serial('an id: image runs lazily with the CMD of the .meta the gateway recorded', async (t) => {
  const { fx } = await lazyShifterd(t, gw!.url);
  const r = await fx.run([`--image=id:${imageId}`]);
  t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
  t.is(r.stdout, OS_RELEASE);
});

/**
 * Passes everything to the gateway but re-serializes chunk indexes with whitespace: the same
 * chunks, still a valid index, but not the bytes whose digest the gateway recorded.
 */
async function indexRewritingProxy(t: { teardown: (f: () => Promise<void>) => void }, upstream: string) {
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([k, v]) => k !== 'host' && typeof v === 'string'),
      ) as Record<string, string>;
      const body = parts.length > 0 ? Buffer.concat(parts) : undefined;
      fetch(new URL(req.url ?? '/', upstream), { method: req.method, headers, body }).then(
        async (up) => {
          let bytes = Buffer.from(await up.arrayBuffer());
          if (up.ok && /\/index$/.test(req.url ?? '')) {
            bytes = Buffer.from(JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 1));
          }
          res.writeHead(up.status, { 'content-type': up.headers.get('content-type') ?? 'application/octet-stream' });
          res.end(bytes);
        },
        () => res.writeHead(502).end(),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test.serial('an index whose bytes are not the ones the gateway recorded is refused, naming the digest', async (t) => {
  const proxy = await indexRewritingProxy(t, gw!.url);
  const { fx, cacheDir } = await lazyShifterd(t, proxy);
  const r = await fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
  t.is(r.code, 1, fx.log);
  t.is(r.stdout, '');
  t.regex(
    r.stderr,
    /^shifter: .*image [0-9a-f]{64} cannot be started lazily: chunk index refused: its sha256 is not the [0-9a-f]{64} recorded/,
  );
  t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  t.deepEqual(storedChunks(cacheDir), [], 'no chunk is fetched for a refused index');
});

/** Chunk GETs in nginx's access log (`GET <uri> <status> <cache status>`): uri and cache status. */
function chunkRequests(log: string): { uri: string; cache: string }[] {
  return log
    .split('\n')
    .map((l) => /^GET (\S+\/chunk\/[0-9a-f]{64}) \d+ (\S+)$/.exec(l))
    .flatMap((m) => (m ? [{ uri: m[1], cache: m[2] }] : []));
}

test.serial(
  'through nginx: a second node cold-starts from the cache, no chunk reaches the gateway twice',
  async (t) => {
    const nginx = await startNginxCache(gw!.url);
    t.teardown(() => nginx.stop());
    const first = await lazyShifterd(t, nginx.url);
    const r1 = await first.fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
    t.is(r1.code, 0, `${r1.stderr}\n${first.fx.log}`);
    t.is(r1.stdout, OS_RELEASE);
    const afterFirst = chunkRequests(await nginx.accessLog());
    t.true(afterFirst.length > 0);

    const second = await lazyShifterd(t, nginx.url);
    const r2 = await second.fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
    t.is(r2.code, 0, `${r2.stderr}\n${second.fx.log}`);
    t.is(r2.stdout, OS_RELEASE);
    const all = chunkRequests(await nginx.accessLog());
    const secondNode = all.slice(afterFirst.length);
    t.true(secondNode.length > 0, 'the second node fetched its chunks through nginx');
    t.deepEqual(
      secondNode.filter((r) => r.cache !== 'HIT'),
      [],
      "every chunk of the second node's cold start came from nginx's cache",
    );
    const sessions = (await nginx.accessLog())
      .split('\n')
      .filter((l) => l.startsWith('POST /api/chunks/testsys/session '));
    t.deepEqual(
      sessions.map((l) => l.split(' ')[2]),
      ['200', '200'],
      'one munge exchange for a node token per node, not a munge credential per request',
    );
    const fromGateway = all.filter((r) => r.cache !== 'HIT').map((r) => r.uri);
    t.is(new Set(fromGateway).size, fromGateway.length, 'no chunk was fetched from the gateway twice');
    t.log(`chunk GETs: first node ${afterFirst.length}, second ${secondNode.length}; gateway ${fromGateway.length}`);
    t.is(storedChunks(second.cacheDir).length, new Set(secondNode.map((r) => r.uri)).size);

    // Both were first cold starts (no profile yet, unless this machine is slow enough for the first
    // profile to arrive before the second start): one profile is kept, a second one is answered 409.
    const logs = () => first.fx.log + second.fx.log;
    const stored = () => logs().split('prefetch profile recorded').length - 1;
    const refused = () => logs().split('prefetch profile already recorded').length - 1;
    await waitFor(() => stored() + refused() === 2, 30_000);
    t.is(stored(), 1, logs());
    t.true(refused() <= 1);
    t.log(`profile PUTs answered 409: ${refused()}`);
    t.false(logs().includes('prefetch profile not sent'), logs());
  },
);
