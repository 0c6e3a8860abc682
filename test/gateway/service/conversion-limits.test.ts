/**
 * Limits through the real gateway: an inode bomb (scaled: limit 20,000 entries, image 50,000) and
 * a layer over Limits.MaxLayerBytes end as FAILURE with a message naming the key to raise, the
 * gateway keeps serving, and nothing is left in ExpandDirectory.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { emptyFilesLayer } from '../../helpers/oci-image.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

let reg: RunningRegistry;
let gw: RunningGateway;
let dir: string;

type Rec = Record<string, unknown>;

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-limits-'));
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'mock',
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
      Limits: { MaxEntries: 20_000, MaxLayerBytes: '1M' },
    },
  });
});

test.after.always(async () => {
  await gw?.kill9();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function pullUntilDone(tag: string): Promise<Rec> {
  let rec: Rec = {};
  for (let i = 0; i < 600 && rec.status !== 'READY' && rec.status !== 'FAILURE'; i++) {
    const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, {
      method: 'POST',
      headers: { authentication: 'good:alice:users::1000:100' },
    });
    rec = (await res.json()) as Rec;
    await new Promise((r) => setTimeout(r, 200));
  }
  return rec;
}

test.serial('an inode bomb fails on Limits.MaxEntries and the gateway keeps serving', async (t) => {
  await pushImage(reg.url, 'team/inodes', '1', { layers: [await emptyFilesLayer(50_000)], config: imageConfig({}) });
  const rec = await pullUntilDone('team/inodes:1');
  t.is(rec.status, 'FAILURE', String(rec.status_message));
  t.regex(
    String(rec.status_message),
    /more than 20000 entries.*Limits\.MaxEntries = 20000.*raise Limits\.MaxEntries in imagemanager\.json/,
  );
  t.is((await fetch(`${gw.url}/`)).status, 200, 'the gateway is still up');
  t.deepEqual(await readdir(join(dir, 'expand')), [], 'no scratch left in ExpandDirectory');
});

test.serial('a layer over Limits.MaxLayerBytes fails before it is downloaded', async (t) => {
  const big = gzipSync(await tarLayer([{ name: 'noise', content: randomBytes(2 << 20) }]), { level: 0 });
  const pushed = await pushImage(reg.url, 'team/big', '1', { layers: [big], config: imageConfig({}) });
  const rec = await pullUntilDone('team/big:1');
  const digest = pushed.layerDigests[0];
  t.is(rec.status, 'FAILURE');
  t.regex(
    String(rec.status_message),
    new RegExp(`layer ${digest} is ${big.length} bytes compressed.*Limits\\.MaxLayerBytes = 1048576`),
  );
  const cached = await readdir(join(dir, 'cache', 'sha256')).catch(() => [] as string[]);
  t.false(cached.includes(digest.slice(7)), 'the layer was not downloaded');
});
