/**
 * The blob cache across a kill -9: the gateway is killed while a layer is half downloaded, and
 * restarted on the same directories. Temporary files in CacheDirectory/sha256 are removed at
 * start-up, and the resumed pull asks the registry only for the bytes it does not have yet.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { access, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';
import { siteGatewayConfig, startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';

const CUT = 512 * 1024;

let reg: RunningRegistry;
let proxy: FlakyProxy;
let dir: string;
const gateways: RunningGateway[] = [];

test.before(async () => {
  reg = await startRegistry();
  proxy = await startFlakyProxy(reg.url);
  dir = await mkdtemp(join(tmpdir(), 'gw-resume-'));
});

test.after.always(async () => {
  for (const g of gateways) await g.kill9();
  await proxy?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningGateway> {
  const g = await startGateway({ dir, config: siteGatewayConfig(dir, proxy.url) });
  gateways.push(g);
  return g;
}

type Rec = Record<string, unknown>;

async function pull(g: RunningGateway, tag: string): Promise<Rec> {
  const res = await fetch(`${g.url}/api/pull/sys/docker/${tag}/`, {
    method: 'POST',
    headers: { authentication: 'good:alice:users::1000:100' },
  });
  return (await res.json()) as Rec;
}

async function sizeOf(p: string): Promise<number> {
  return stat(p).then(
    (s) => s.size,
    () => 0,
  );
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

test.serial(
  'kill -9 mid-layer: start-up removes cache temp files and the pull resumes the layer with Range',
  async (t) => {
    // Random content does not compress: the layer stays large enough that the cut leaves most of it to fetch.
    const layer = gzipSync(await tarLayer([{ name: 'data.bin', content: randomBytes(3 * 1024 * 1024) }]));
    const pushed = await pushImage(reg.url, 'team/resume', '1', { layers: [layer], config: imageConfig({}) });
    const digest = pushed.layerDigests[0];
    const blobPath = `/v2/team/resume/blobs/${digest}`;

    // Two blob GETs: the image config (smaller than CUT, so it arrives whole) and then the layer.
    proxy.stallBlobBodies(2, CUT);
    const g1 = await start();
    let rec = await pull(g1, 'team/resume:1');
    t.is(rec.status, 'PENDING');
    const partial = join(dir, 'cache', 'sha256', `.partial-${digest.slice(7)}`);
    for (let i = 0; i < 150 && (await sizeOf(partial)) < CUT; i++) await new Promise((r) => setTimeout(r, 100));
    t.is(await sizeOf(partial), CUT, 'the bytes before the stall are on disk when the gateway is killed');
    await g1.kill9();
    const leftover = join(dir, 'cache', 'sha256', `.tmp-${'a'.repeat(64)}.0123456789ab`);
    await mkdir(join(dir, 'cache', 'sha256'), { recursive: true });
    await writeFile(leftover, 'an interrupted commit');

    proxy.clearLog();
    const g2 = await start();
    t.false(await exists(leftover), 'temp files in the blob cache are removed at start-up');
    for (let i = 0; i < 200 && rec.status !== 'READY' && rec.status !== 'FAILURE'; i++) {
      await new Promise((r) => setTimeout(r, 150));
      rec = await pull(g2, 'team/resume:1');
    }
    t.is(rec.status, 'READY', String(rec.status_message));
    const gets = proxy.requests.filter((r) => r.method === 'GET' && r.url === blobPath);
    t.deepEqual(
      gets.map((g) => g.headers.range),
      [`bytes=${CUT}-`],
    );
    t.deepEqual(
      await readdir(join(dir, 'cache', 'sha256')).then((names) => names.filter((n) => n.startsWith('.'))),
      [],
    );
    await g2.stop();
  },
);
