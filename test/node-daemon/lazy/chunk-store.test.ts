/**
 * The chunk store on a real directory: atomic puts, LRU eviction that spares pinned chunks, rebuild
 * at start, images kept whole (their chunks dropped, evicted like chunks, found again at start).
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sha256Hex, type ChunkDigest } from '../../../common/chunk-index.js';
import { ChunkStore } from '../../../node-daemon/lazy/chunk-store.js';
import type { ImageId } from '../../../common/image-descriptor.js';

function chunk(): { digest: ChunkDigest; bytes: Buffer } {
  const bytes = randomBytes(1000);
  return { digest: sha256Hex(bytes) as ChunkDigest, bytes };
}

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('least recently used chunks go first, down to the limit; a pinned chunk stays', async (t) => {
  const dir = tempDir(t);
  const store = await ChunkStore.open(dir, 3000);
  const [a, b, c, d, e] = [chunk(), chunk(), chunk(), chunk(), chunk()];
  for (const x of [a, b, c]) await store.put(x.digest, x.bytes);
  // a is used (most recent now), so b is the oldest.
  t.deepEqual(await store.withChunk(a.digest, async (h) => (await h.stat()).size), 1000);
  await store.put(d.digest, d.bytes);
  t.false(store.has(b.digest));
  t.false(existsSync(join(dir, 'chunks', b.digest)));
  t.true(store.has(a.digest) && store.has(c.digest) && store.has(d.digest));
  // c is the oldest now, but a read holds it while e arrives: a, the next oldest, goes instead.
  await store.withChunk(c.digest, async () => {
    await store.put(e.digest, e.bytes);
  });
  t.true(store.has(c.digest), 'pinned while read');
  t.false(store.has(a.digest));
  t.deepEqual(store.usage(), { chunks: 3, wholeImages: 0, bytes: 3000, limitBytes: 3000 });
});

test('a new store finds what the last one kept and removes unfinished temporary files', async (t) => {
  const dir = tempDir(t);
  const first = await ChunkStore.open(dir, 1e6);
  const kept = [chunk(), chunk()];
  for (const x of kept) await first.put(x.digest, x.bytes);
  writeFileSync(join(dir, 'chunks', `.tmp-${kept[0].digest}.abc`), 'half');
  const second = await ChunkStore.open(dir, 1e6);
  t.true(kept.every((x) => second.has(x.digest)));
  t.deepEqual(readdirSync(join(dir, 'chunks')).sort(), kept.map((x) => x.digest).sort());
  t.is(second.usage().bytes, 2000);
});

const imageId = (): ImageId => randomBytes(32).toString('hex') as ImageId;

test('an image kept whole: one file with its bytes, its chunks dropped, found again by a new store', async (t) => {
  const dir = tempDir(t);
  const store = await ChunkStore.open(dir, 1e6);
  const parts = [chunk(), chunk(), chunk()];
  for (const x of parts) await store.put(x.digest, x.bytes);
  const id = imageId();
  const image = Buffer.concat(parts.map((x) => x.bytes));
  const file = await store.putWhole(
    id,
    image.length,
    async (h) => {
      await h.write(image, 0, image.length, 0);
    },
    parts.map((x) => x.digest),
  );
  t.is(file, join(dir, 'images', `${id}.squashfs`));
  t.deepEqual(readFileSync(file), image);
  t.is(store.wholePath(id), file);
  t.false(
    parts.some((x) => store.has(x.digest)),
    'its chunks are dropped',
  );
  t.deepEqual(readdirSync(join(dir, 'chunks')), []);
  t.deepEqual(store.usage(), { chunks: 0, wholeImages: 1, bytes: 3000, limitBytes: 1e6 });
  const second = await ChunkStore.open(dir, 1e6);
  t.is(second.wholePath(id), file);
  t.deepEqual(await second.withWhole(id, async (h) => (await h.stat()).size), 3000);
});

test('a whole image that fails to be written leaves no file and keeps its chunks', async (t) => {
  const dir = tempDir(t);
  const store = await ChunkStore.open(dir, 1e6);
  const parts = [chunk(), chunk()];
  for (const x of parts) await store.put(x.digest, x.bytes);
  const id = imageId();
  const short = await t.throwsAsync(
    store.putWhole(id, 2000, (h) => h.write(parts[0].bytes, 0, 1000, 0).then(() => undefined), []),
  );
  t.regex(short.message, new RegExp(`cannot keep image ${id} whole in .*: wrote 1000 bytes of 2000`));
  const failed = await t.throwsAsync(
    store.putWhole(
      id,
      2000,
      () => Promise.reject(new Error('disk went away')),
      parts.map((x) => x.digest),
    ),
  );
  t.regex(failed.message, /disk went away/);
  t.deepEqual(readdirSync(join(dir, 'images')), [], 'no temporary file left');
  t.is(store.wholePath(id), undefined);
  t.true(parts.every((x) => store.has(x.digest)));
});

test('a whole image is evicted like a chunk, least recently used first, and the store says so', async (t) => {
  const dir = tempDir(t);
  const store = await ChunkStore.open(dir, 3000);
  const evicted: ImageId[] = [];
  store.onWholeEvicted = (id) => evicted.push(id);
  const id = imageId();
  const bytes = randomBytes(2000);
  await store.putWhole(id, 2000, (h) => h.write(bytes, 0, 2000, 0).then(() => undefined), []);
  const a = chunk();
  await store.put(a.digest, a.bytes);
  t.deepEqual(evicted, []);
  store.touchWhole(id);
  const b = chunk();
  await store.put(b.digest, b.bytes);
  t.deepEqual(evicted, [], 'the whole image was used last: chunk a goes');
  t.false(store.has(a.digest));
  const c = chunk();
  await store.put(c.digest, c.bytes);
  t.deepEqual(evicted, [id]);
  t.is(store.wholePath(id), undefined);
  t.false(existsSync(join(dir, 'images', `${id}.squashfs`)));
  t.deepEqual(store.usage(), { chunks: 2, wholeImages: 0, bytes: 2000, limitBytes: 3000 });
});
