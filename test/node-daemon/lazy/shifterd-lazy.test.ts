/**
 * shifterd with a lazy image cache: an image that is not in imagePath is launched from the chunk
 * server through the FUSE server shifterd supervises; the admin API shows and pre-stages the
 * cache; stopping shifterd leaves no FUSE mount, loop device or process.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import type { ExecutionContext } from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../../../node-daemon/admin-server.js';
import { REPO, ShifterdFixture, ensureTestUser } from '../runtime-fixture.js';
import { startChunkServer, type ChunkServer } from './chunk-server.js';
import { loopsOver, mountsUnder, waitFor } from './lazy-fixture.js';

const run = promisify(execFile);
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

/** `shifterd-cache status` as an admin runs it: the hits and misses it prints for the one image. */
async function cacheCounts(): Promise<{ hits: number; misses: number; text: string }> {
  const { stdout } = await run(join(REPO, 'bin', 'shifterd-cache'), ['--admin-socket', fx.adminSocket, 'status']);
  const m = /hits (\d+) {2}misses (\d+)/.exec(stdout);
  if (m === null) throw new Error(`no hits/misses in shifterd-cache status:\n${stdout}`);
  return { hits: Number(m[1]), misses: Number(m[2]), text: stdout };
}

/**
 * shifterd configured for a chunk server of the test image under `tag`, with its own lazy cache
 * `cacheName` and `settings` (lazyImageCacheSize at least); `launch` runs `cat /etc/image-release`
 * in the image and checks what it printed.
 */
async function lazyNode(
  t: ExecutionContext,
  tag: string,
  cacheName: string,
  settings: string[],
): Promise<{ chunks: ChunkServer; cacheDir: string; launch: () => Promise<void> }> {
  const chunks = await startChunkServer(join(fx.dir, 'image.squashfs'), { chunkSize: 64 * 1024, lookupTag: tag });
  t.teardown(() => chunks.close());
  const cacheDir = join(fx.dir, cacheName);
  fx.writeConfig([
    `imageGateway=${chunks.url}`,
    'system=test',
    `lazyImageCache=${cacheDir}`,
    'lazyChunkTimeout=5',
    ...settings,
  ]);
  const launch = async (): Promise<void> => {
    const r = await fx.run([`--image=${tag}`, 'cat', '/etc/image-release']);
    t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
    t.is(r.stdout, 'test image\n');
  };
  return { chunks, cacheDir, launch };
}

test.serial(
  'cold then warm: the cache counts what reached the FUSE server; facts survive the gateway going down',
  async (t) => {
    // The 1 MiB image is more than half this cache: it is never kept whole, so its reads stay FUSE
    // reads and the counters have something to count (the next test keeps an image whole).
    const { chunks, launch } = await lazyNode(t, 'lazy:2', 'lazycache-warm', [
      'lazyImageCacheSize=1536k',
      'lazyFactsTtl=1',
    ]);
    await fx.start();
    await launch();
    const cold = await cacheCounts();
    t.true(cold.misses > 0, `a cold start waits for fetches:\n${cold.text}`);
    const fetched = chunks.chunkRequests.length;

    // Same environment, same mount: the kernel's page cache answers, the FUSE server sees nothing.
    await launch();
    t.like(await cacheCounts(), { hits: cold.hits, misses: cold.misses });

    // shifterd restarted: a new mount reads every chunk from the store, none from the gateway.
    t.is(await fx.stop('SIGTERM'), 0);
    await fx.start();
    await launch();
    const warm = await cacheCounts();
    t.is(warm.misses, 0, warm.text);
    t.true(warm.hits > 0, warm.text);
    t.is(chunks.chunkRequests.length, fetched, 'a warm start fetches no chunk');

    // The gateway goes down and the facts outlive lazyFactsTtl: the facts last seen still start the image.
    chunks.down = true;
    await new Promise((r) => setTimeout(r, 1500));
    await launch();
    // shifterd's log reaches this process on its own pipe, maybe after the launcher's exit.
    const warned = /image gateway unreachable: using the image facts \(ACLs\) last seen/;
    t.true(await waitFor(() => warned.test(fx.log), 10_000), fx.log);
    t.is(await fx.stop('SIGTERM'), 0);
  },
);

test.serial(
  'every chunk cached: the image is kept whole, its loop device leaves FUSE, it outlives the FUSE server and the gateway',
  async (t) => {
    const { chunks, cacheDir, launch } = await lazyNode(t, 'lazy:3', 'lazycache-whole', ['lazyImageCacheSize=1g']);
    const id = chunks.index.imageId;
    const fuseFile = join(cacheDir, 'mnt', `${id}.squashfs`);
    const wholeFile = join(cacheDir, 'images', `${id}.squashfs`);
    await fx.start();
    await launch();
    t.is(
      loopsOver(join(cacheDir, 'images')).length + loopsOver(fuseFile).length,
      1,
      "one loop device, the environment's",
    );

    // The rest staged: the image is kept whole and the environment's loop device moved onto its file.
    const staged = await run(join(REPO, 'bin', 'shifterd-cache'), [
      '--admin-socket',
      fx.adminSocket,
      'stage',
      'lazy:3',
    ]);
    t.regex(staged.stdout, /\(100%, 16\/16 chunks\).*whole: one local file, read without FUSE/);
    t.deepEqual(readFileSync(wholeFile), readFileSync(join(fx.dir, 'image.squashfs')));
    t.deepEqual(loopsOver(fuseFile), [], 'no loop device reads the FUSE file any more');
    t.is(loopsOver(wholeFile).length, 1);
    t.deepEqual(readdirSync(join(cacheDir, 'chunks')), [], 'the chunks are dropped: the image costs its size once');
    const fetched = chunks.chunkRequests.length;

    // The FUSE server killed: the environment on the whole file is kept and reads on, caches dropped.
    const [serverPid] = lazyServerPids(cacheDir);
    process.kill(Number(serverPid), 'SIGKILL');
    t.true(await waitFor(() => lazyServerPids(cacheDir).some((p) => p !== serverPid), 15_000), fx.log);
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    await launch();
    t.like(await cacheCounts(), { hits: 0, misses: 0 });
    t.is(loopsOver(wholeFile).length, 1, 'the same environment');

    // shifterd restarted: a new start attaches the whole file, no FUSE read, no fetch.
    t.is(await fx.stop('SIGTERM'), 0);
    await fx.start();
    await launch();
    t.is(loopsOver(wholeFile).length, 1);
    t.deepEqual(loopsOver(fuseFile), []);
    t.is(chunks.chunkRequests.length, fetched, 'a start from the whole file fetches no chunk');
    t.regex((await cacheCounts()).text, /1 whole images/);

    // Restarted again with the gateway down: the facts kept on disk and the whole file start the
    // image (by id, as Slurm pins it: a tag needs the gateway).
    t.is(await fx.stop('SIGTERM'), 0);
    chunks.down = true;
    await fx.start();
    const r = await fx.run([`--image=id:${id}`, 'cat', '/etc/image-release']);
    t.is(r.code, 0, `${r.stderr}\n${fx.log}`);
    t.is(r.stdout, 'test image\n');
    const fromDisk = /"from":"disk".*image gateway unreachable: using the image facts \(ACLs\) last seen/;
    t.true(await waitFor(() => fromDisk.test(fx.log), 10_000), fx.log);
    t.is(await fx.stop('SIGTERM'), 0);
    t.deepEqual(mountsUnder(cacheDir), []);
    t.true(await waitFor(() => loopsOver(cacheDir).length === 0, 10_000), 'no loop device left');
  },
);
