/** The chunk store on a real directory: atomic puts, LRU eviction that spares pinned chunks, rebuild at start. */
import test from 'ava';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { sha256Hex, type ChunkDigest } from '../../../common/chunk-index.js';
import { ChunkStore } from '../../../node-daemon/lazy/chunk-store.js';

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
  t.deepEqual(store.usage(), { chunks: 3, bytes: 3000, limitBytes: 3000 });
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
