/**
 * A full disk is named as such, wherever it is, and never blamed on the image: each of
 * ExpandDirectory, CacheDirectory, imageDir and the metadata store is put on its own small tmpfs
 * (unmounted at the end) and filled by a pull. The pull fails "disk full in <dir> (<key>)",
 * logged at error level; with the store's disk full, POST /api/pull answers 503 with that message.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

const run = promisify(execFile);
let reg: RunningRegistry;
let dir: string;
const mounts: string[] = [];
const gateways: RunningGateway[] = [];

type Rec = Record<string, unknown>;
const ALICE = { authentication: 'good:alice:users::1000:100' };

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-disk-full-'));
  // 3 MB of noise: bigger than each small filesystem, whatever the compression.
  const layer = gzipSync(await tarLayer([{ name: 'noise', content: randomBytes(3 << 20) }]), { level: 0 });
  await pushImage(reg.url, 'team/noise', '1', { layers: [layer], config: imageConfig({}) });
});

test.after.always(async () => {
  for (const g of gateways) await g.kill9();
  for (const m of mounts.reverse()) await run('umount', [m]).catch(() => undefined);
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function smallFs(name: string, size: string): Promise<string> {
  const m = join(dir, name);
  await mkdir(m, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', m]);
  mounts.push(m);
  return m;
}

async function gateway(
  name: string,
  dirs: Partial<Record<'cache' | 'expand' | 'images' | 'store', string>>,
): Promise<RunningGateway> {
  const base = join(dir, name);
  const g = await startGateway({
    dir,
    config: {
      CacheDirectory: dirs.cache ?? join(base, 'cache'),
      ExpandDirectory: dirs.expand ?? join(base, 'expand'),
      MetadataStore: join(dirs.store ?? base, 'gateway.sqlite'),
      Authentication: 'mock',
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir: dirs.images ?? join(base, 'images') } } },
    },
  });
  gateways.push(g);
  return g;
}

async function pullUntilDone(g: RunningGateway): Promise<Rec> {
  let rec: Rec = {};
  for (let i = 0; i < 300 && rec.status !== 'READY' && rec.status !== 'FAILURE'; i++) {
    rec = (await (
      await fetch(`${g.url}/api/pull/sys/docker/team/noise:1/`, { method: 'POST', headers: ALICE })
    ).json()) as Rec;
    await new Promise((r) => setTimeout(r, 200));
  }
  return rec;
}

/** Whether the gateway logged `text` at error level (waiting a little: its stdout arrives through a pipe). */
async function loggedError(g: RunningGateway, text: string): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if (
      g
        .logs()
        .split('\n')
        .some((l) => l.includes('"level":50') && l.includes(text))
    )
      return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

for (const [key, which] of [
  ['ExpandDirectory', 'expand'],
  ['CacheDirectory', 'cache'],
  ['Platforms.sys.local.imageDir', 'images'],
] as const) {
  test.serial(`a full ${key} fails the pull as "disk full" naming it, not as a bad image`, async (t) => {
    const full = await smallFs(`full-${which}`, '1m');
    const g = await gateway(`case-${which}`, { [which]: full });
    const rec = await pullUntilDone(g);
    t.is(rec.status, 'FAILURE');
    const message = String(rec.status_message);
    t.true(message.startsWith(`disk full in ${full} (${key})`), message);
    t.notRegex(message, /corrupt|not a readable tar|delete it from the cache/);
    t.true(await loggedError(g, `disk full in ${full}`), 'logged at error level');
    await g.stop();
  });
}

test.serial('with the metadata store\'s disk full, a pull gets 503 "disk full", not 500', async (t) => {
  const full = await smallFs('full-store', '1m');
  const g = await gateway('case-store', { store: full });
  await writeFile(join(full, 'filler'), Buffer.alloc(4 << 20)).catch(() => undefined);
  const res = await fetch(`${g.url}/api/pull/sys/docker/team/noise:1/`, { method: 'POST', headers: ALICE });
  const body = (await res.json()) as Rec;
  t.is(res.status, 503, JSON.stringify(body));
  t.true(String(body.error).startsWith(`disk full in ${full} (MetadataStore)`), String(body.error));
  t.true(await loggedError(g, `disk full in ${full}`), 'logged at error level');
  await g.stop();
});
