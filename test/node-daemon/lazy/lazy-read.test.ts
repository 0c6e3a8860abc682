/**
 * A lazy image end to end on this node: a real chunk server (HTTP, the gateway's routes), the
 * FUSE server process, a real read-only loop device and squashfs mount from the native helper.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import type { ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachImage } from '../../../node-daemon/adapters/index.js';
import { startChunkServer } from './chunk-server.js';
import { buildLazyImage, lazyConfig, loopsOver, mountsUnder, processAlive, startLazyServer } from './lazy-fixture.js';

/** The fixture image behind a chunk server of 64 KiB chunks and a FUSE server for it, all removed after `t`. */
async function lazyImageServer(t: ExecutionContext) {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-lazy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { image, files } = buildLazyImage(dir);
  const chunks = await startChunkServer(image, { chunkSize: 64 * 1024 });
  t.teardown(() => chunks.close());
  const { supervisor, config, logText } = await startLazyServer(lazyConfig(dir, [chunks.url]));
  t.teardown(() => {
    if (!t.passed) t.log(logText());
  });
  return { files, chunks, supervisor, config };
}

test('a lazy image mounts and reads as the file does, fetching only what is read; stop leaves nothing', async (t) => {
  const { files, chunks, supervisor, config } = await lazyImageServer(t);
  const pid = supervisor.pid;
  try {
    const file = await supervisor.open(chunks.index.imageId);
    t.is(file, join(config.mountpoint, `${chunks.index.imageId}.squashfs`));
    const mount = await attachImage(file);
    try {
      // Asynchronous reads: the chunk server answers from this same process.
      t.is(await readFile(`/proc/self/fd/${mount.fd}/hello`, 'utf8'), 'hello from a lazy image\n');
      t.deepEqual(await readFile(`/proc/self/fd/${mount.fd}/data/f3`), files[3]);
      t.true(loopsOver(config.mountpoint).length === 1, 'one loop device over the FUSE file');
    } finally {
      mount.release();
    }
    const total = chunks.index.chunks.length;
    const fetched = new Set(chunks.chunkRequests).size;
    t.true(fetched < total / 2, `fetched ${fetched} of ${total} chunks`);
    t.is(chunks.chunkRequests.length, fetched, 'no chunk fetched twice');
    const status = await supervisor.status();
    t.is(status.images.length, 1);
    t.is(status.images[0].cachedChunks, fetched);
  } finally {
    await supervisor.stop();
  }
  t.deepEqual(mountsUnder(config.mountpoint), []);
  t.deepEqual(loopsOver(config.mountpoint), []);
  t.false(processAlive(pid));
});

test('an attach of the FUSE file that ends after the image was kept whole is moved onto the whole file', async (t) => {
  const { files, chunks, supervisor, config } = await lazyImageServer(t);
  const id = chunks.index.imageId;
  const wholeFile = join(config.cacheDir, 'images', `${id}.squashfs`);
  try {
    // A launch got the FUSE file, then the image became whole before its attach was made.
    const fuseFile = await supervisor.open(id);
    const staged = await supervisor.stage(id);
    t.true(staged.image.whole);
    t.is(await supervisor.open(id), wholeFile, 'later starts get the whole file');
    const mount = await attachImage(fuseFile);
    try {
      t.is(loopsOver(fuseFile).length, 1, 'the late attach reads FUSE');
      await supervisor.attached(id, fuseFile);
      t.deepEqual(loopsOver(fuseFile), []);
      t.is(loopsOver(wholeFile).length, 1);
      writeFileSync('/proc/sys/vm/drop_caches', '3');
      t.deepEqual(await readFile(`/proc/self/fd/${mount.fd}/data/f5`), files[5]);
    } finally {
      mount.release();
    }
  } finally {
    await supervisor.stop();
  }
  t.deepEqual(mountsUnder(config.mountpoint), []);
});
