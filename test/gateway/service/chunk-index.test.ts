/**
 * The chunk index at conversion, end to end: the real registry, the real gateway binary, a pull
 * until READY, then what imageDir holds (`<id>.chunks` against the squashfs recomputed here, the
 * CHUNKINDEX line of `.meta`), what the record says, and what the chunk routes serve over HTTP.
 * Then the two ways an image can lack an index: converted before indexes existed (a later pull
 * of another tag writes it) and a crash after `.chunks` but before `.meta` (nothing is ready, the
 * resumed pull writes all three again).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseChunkIndex, sha256Hex, type ChunkIndex } from '../../../common/chunk-index.js';
import { parseImageMeta } from '../../../common/image-meta.js';
import { DEFAULT_CHUNK_SIZE } from '../../../gateway/chunks/index-file.js';
import type { PlatformConfig } from '../../../gateway/config/imagemanager.js';
import { imageFilesComplete } from '../../../gateway/transfer/local.js';
import { SqliteImageStore } from '../../../gateway/store/sqlite-store.js';
import { siteGatewayConfig, startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { file, layerTar } from '../../helpers/oci-image.js';
import { imageConfig, pushImage, startRegistry, type RunningRegistry } from '../../helpers/registry.js';

let reg: RunningRegistry;
let dir: string;
let imageDir: string;
const gateways: RunningGateway[] = [];

const ALICE = { authentication: 'good:alice:users::1000:100' };
const ROOT = { authentication: 'good:root:root::0:0' };
type Rec = Record<string, unknown>;

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-chunks-'));
  imageDir = join(dir, 'images');
});

test.after.always(async () => {
  for (const g of gateways) await g.kill9();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningGateway> {
  const g = await startGateway({ dir, config: siteGatewayConfig(dir, reg.url) });
  gateways.push(g);
  return g;
}

/** An image whose squashfs spans a few chunks: random bytes do not compress. */
async function pushRandom(repo: string, tags: string[], megabytes: number): Promise<string> {
  const layer = gzipSync(await layerTar([file('data/random.bin', randomBytes(megabytes * 1024 * 1024))]), {
    level: 1,
  });
  let id = '';
  for (const tag of tags) {
    const pushed = await pushImage(reg.url, repo, tag, { layers: [layer], config: imageConfig({}) });
    id = pushed.manifestDigest.replace(/^sha256:/, '');
  }
  return id;
}

async function pullUntilDone(g: RunningGateway, tag: string): Promise<Rec> {
  let rec: Rec = {};
  for (let i = 0; i < 1200; i++) {
    const res = await fetch(`${g.url}/api/pull/sys/docker/${tag}/`, { method: 'POST', headers: ALICE });
    rec = (await res.json()) as Rec;
    if (rec.status === 'READY' || rec.status === 'FAILURE') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return rec;
}

/** The index recomputed here from the image file, chunk by chunk. */
async function recompute(id: string): Promise<string[]> {
  const image = await readFile(join(imageDir, `${id}.squashfs`));
  const out: string[] = [];
  for (let at = 0; at < image.length; at += DEFAULT_CHUNK_SIZE) {
    out.push(sha256Hex(image.subarray(at, at + DEFAULT_CHUNK_SIZE)));
  }
  return out;
}

async function storedIndex(id: string): Promise<{ index: ChunkIndex; digest: string }> {
  const bytes = await readFile(join(imageDir, `${id}.chunks`));
  return { index: parseChunkIndex(bytes), digest: sha256Hex(bytes) };
}

async function metaDigest(id: string): Promise<string | null | undefined> {
  return parseImageMeta(await readFile(join(imageDir, `${id}.meta`), 'utf8')).chunkIndex;
}

/** The READY record as the gateway stored it (read after the gateway has stopped). */
async function recordOf(id: string) {
  const store = new SqliteImageStore(join(dir, 'cache', 'gateway.sqlite'));
  try {
    return await store.findReadyById('sys', id);
  } finally {
    await store.close();
  }
}

test.serial('a pulled image has a chunk index that matches the file, its digest in .meta and the record', async (t) => {
  const id = await pushRandom('team/random', ['1'], 3);
  const g = await start();
  const rec = await pullUntilDone(g, 'team/random:1');
  t.is(rec.status, 'READY', JSON.stringify(rec));
  t.deepEqual(Object.keys(rec).length, 13, 'the API record keeps upstream keys only');
  const { index, digest } = await storedIndex(id);
  t.is(String(index.imageId), id);
  t.is(index.chunkSize, DEFAULT_CHUNK_SIZE);
  t.true(index.chunks.length >= 3);
  t.deepEqual(index.chunks, await recompute(id));
  t.is(await metaDigest(id), digest);

  const session = await fetch(`${g.url}/api/chunks/sys/session`, { method: 'POST', headers: ROOT });
  const { token } = (await session.json()) as { token: string };
  const auth = { authorization: `Bearer ${token}` };
  const info = (await (await fetch(`${g.url}/api/chunks/sys/${id}`, { headers: auth })).json()) as Rec;
  t.is(info.indexDigest, digest);
  const served = Buffer.from(
    await (await fetch(`${g.url}/api/chunks/sys/${id}/index`, { headers: auth })).arrayBuffer(),
  );
  t.deepEqual(parseChunkIndex(served, digest), index);
  const chunk = await fetch(`${g.url}/api/chunks/sys/${id}/chunk/${index.chunks[1]}`, { headers: auth });
  const bytes = Buffer.from(await chunk.arrayBuffer());
  t.is(createHash('sha256').update(bytes).digest('hex'), index.chunks[1]);
  t.is(bytes.length, DEFAULT_CHUNK_SIZE);
  const user = await fetch(`${g.url}/api/chunks/sys/${id}/chunk/${index.chunks[1]}`, { headers: ALICE });
  t.is(user.status, 403);
  await g.stop();
  t.is((await recordOf(id))?.chunkIndex, digest);
});

test.serial('an image converted before indexes existed gets one when another tag of it is pulled', async (t) => {
  const id = await pushRandom('team/old', ['1', '2'], 2);
  const g = await start();
  t.is((await pullUntilDone(g, 'team/old:1')).status, 'READY');
  // What an older gateway left: no .chunks, no CHUNKINDEX line.
  const { digest } = await storedIndex(id);
  await rm(join(imageDir, `${id}.chunks`));
  const meta = await readFile(join(imageDir, `${id}.meta`), 'utf8');
  await writeFile(join(imageDir, `${id}.meta`), meta.replace(/^CHUNKINDEX: .*\n/m, ''));
  t.is(await metaDigest(id), undefined);
  t.is((await pullUntilDone(g, 'team/old:2')).status, 'READY');
  t.regex(g.logs(), /"metaOnly":true/, 'the second tag took the meta-only path');
  t.is((await storedIndex(id)).digest, digest);
  t.is(await metaDigest(id), digest);
  await g.stop();
});

test.serial(
  'a crash after .chunks and before .meta leaves nothing ready; the resumed pull writes all three',
  async (t) => {
    const id = await pushRandom('team/crash', ['1'], 2);
    const g1 = await start();
    t.is((await pullUntilDone(g1, 'team/crash:1')).status, 'READY');
    await g1.stop();
    // The state a kill -9 between the two renames leaves: image and index in place, no meta, the
    // pull record still in TRANSFER.
    await rm(join(imageDir, `${id}.meta`));
    const store = new SqliteImageStore(join(dir, 'cache', 'gateway.sqlite'));
    const rec = await store.findReadyById('sys', id);
    if (!rec) throw new Error('no READY record');
    await store.update(rec.key, { status: 'TRANSFER', status_message: 'Copying image' });
    await store.close();
    await access(join(imageDir, `${id}.chunks`));
    await writeFile(join(imageDir, `${id}.chunks`), '{"stale": true}');
    const platform = { imageDir } as PlatformConfig;
    t.false(await imageFilesComplete(platform, id), 'image + index without meta is not a complete image');
    t.is(await recordOf(id), null);

    const g2 = await start();
    t.regex(g2.logs(), /resuming an interrupted pull/);
    t.is((await pullUntilDone(g2, 'team/crash:1')).status, 'READY');
    const { index, digest } = await storedIndex(id);
    t.deepEqual(index.chunks, await recompute(id));
    t.is(await metaDigest(id), digest);
    await g2.stop();
  },
);
