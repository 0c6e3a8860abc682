/**
 * Prefetch: opening an image fetches the superblock and the metadata tables; the first cold start
 * records which chunks it read and PUTs that profile; a cold start on another node fetches the
 * profile's chunks before anything reads them.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunksCovering } from '../../../common/chunk-index.js';
import { attachImage } from '../../../node-daemon/adapters/index.js';
import { startChunkServer } from './chunk-server.js';
import { buildLazyImage, lazyConfig, startLazyServer, waitFor } from './lazy-fixture.js';

test('the first cold start records a profile; the next cold start prefetches it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-lazyp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { image, files } = buildLazyImage(dir);
  const chunks = await startChunkServer(image, { chunkSize: 64 * 1024 });
  t.teardown(() => chunks.close());
  const { index } = chunks;
  const superblock = (await readFile(image)).subarray(0, 96);
  const tablesStart = Number(superblock.readBigUInt64LE(64));
  const used = Number(superblock.readBigUInt64LE(40));
  const expectedAtOpen = new Set([0, ...chunksCovering(index, tablesStart, used - tablesStart)]);

  const first = await startLazyServer(lazyConfig(join(dir, 'node1'), [chunks.url], { profileWindowMs: 1500 }));
  t.teardown(() => first.supervisor.stop());
  await first.supervisor.open(index.imageId);
  t.deepEqual(new Set(chunks.chunkRequests), expectedAtOpen, 'superblock and tables only');
  const mount = await attachImage(join(first.config.mountpoint, `${index.imageId}.squashfs`));
  t.deepEqual(await readFile(`/proc/self/fd/${mount.fd}/data/f5`), files[5]);
  mount.release();
  const readByStart = new Set(chunks.chunkRequests);
  t.true(await waitFor(() => chunks.profile !== undefined, 15_000), 'profile PUT after the window');
  const profile = JSON.parse(chunks.profile!.toString()) as { version: number; imageId: string; chunks: number[] };
  t.is(profile.imageId, index.imageId);
  for (const n of readByStart) if (!expectedAtOpen.has(n)) t.true(profile.chunks.includes(n), `chunk ${n} in profile`);

  // Another node, cold: opening alone brings in the profile's chunks.
  const before = chunks.chunkRequests.length;
  const second = await startLazyServer(lazyConfig(join(dir, 'node2'), [chunks.url]));
  t.teardown(() => second.supervisor.stop());
  await second.supervisor.open(index.imageId);
  const wanted = new Set(profile.chunks);
  t.true(
    await waitFor(() => [...wanted].every((n) => chunks.chunkRequests.slice(before).includes(n)), 15_000),
    'every profile chunk fetched without a read',
  );
  t.is((await second.supervisor.status()).images[0].misses, 0);
});
