/**
 * shifterd with a lazy image cache: an image that is not in imagePath is launched from the chunk
 * server through the FUSE server shifterd supervises; the admin API shows and pre-stages the
 * cache; stopping shifterd leaves no FUSE mount, loop device or process.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../../../node-daemon/admin-server.js';
import { ShifterdFixture, ensureTestUser } from '../runtime-fixture.js';
import { startChunkServer } from './chunk-server.js';
import { loopsOver, mountsUnder, waitFor } from './lazy-fixture.js';

ensureTestUser();
const fx = new ShifterdFixture();
test.after.always(async () => {
  await fx.cleanup();
});

function admin<T>(method: string, request: object): Promise<T> {
  const Client = shifterdServiceClient(loadShifterdProto());
  const client = new Client(`unix://${fx.adminSocket}`, grpc.credentials.createInsecure()) as unknown as Record<
    string,
    (req: object, cb: (err: grpc.ServiceError | null, res: T) => void) => void
  > &
    grpc.Client;
  return new Promise((resolve, reject) =>
    client[method](request, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res);
    }),
  );
}

function lazyServerPids(cacheDir: string): string[] {
  try {
    return execFileSync('pgrep', ['-f', `fuse-server-main.js.*${cacheDir}`], { encoding: 'utf8' })
      .trim()
      .split('\n');
  } catch {
    return [];
  }
}

test.serial('an image not in imagePath is launched lazily; admin status and stage; stop leaves nothing', async (t) => {
  const chunks = await startChunkServer(join(fx.dir, 'image.squashfs'), { chunkSize: 64 * 1024, lookupTag: 'lazy:1' });
  t.teardown(() => chunks.close());
  const cacheDir = join(fx.dir, 'lazycache');
  fx.writeConfig([
    `imageGateway=${chunks.url}`,
    'system=test',
    `lazyImageCache=${cacheDir}`,
    'lazyImageCacheSize=1g',
    'lazyChunkTimeout=5',
  ]);
  await fx.start();
  const r = await fx.run(['--image=lazy:1', 'cat', '/etc/image-release']);
  t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
  t.is(r.stdout, 'test image\n');
  // busybox is most of this image and cat is busybox: most chunks are read (lazy-read.test.ts has a sparse read).
  const fetched = new Set(chunks.chunkRequests).size;

  interface Cached {
    imageId: string;
    imageBytes: number;
    cachedBytes: number;
    chunks: number;
    cachedChunks: number;
    misses: number;
  }
  const status = await admin<{ storeChunks: number; images: Cached[] }>('CacheStatus', {});
  t.is(status.images.length, 1);
  t.is(status.images[0].imageId, chunks.index.imageId);
  t.is(status.images[0].cachedChunks, fetched);
  const staged = await admin<Cached>('StageImage', { image: 'lazy:1' });
  t.is(staged.cachedChunks, chunks.index.chunks.length);
  t.is(staged.cachedBytes, staged.imageBytes);

  t.is(await fx.stop('SIGTERM'), 0);
  t.deepEqual(mountsUnder(cacheDir), []);
  t.true(await waitFor(() => loopsOver(cacheDir).length === 0, 10_000), 'no loop device over the FUSE file');
  t.deepEqual(lazyServerPids(cacheDir), []);
});
