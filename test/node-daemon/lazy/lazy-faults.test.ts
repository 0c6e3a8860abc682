/**
 * What readers of a lazy image see when things go wrong: the gateway gone, bad chunk bytes, the
 * FUSE server killed, the chunk store's disk full. Real FUSE server, loop devices and squashfs;
 * reads are asynchronous because the chunk server answers from this same process.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';
import { sha256Hex } from '../../../common/chunk-index.js';
import { attachImage } from '../../../node-daemon/adapters/index.js';
import type { ImageMount } from '../../../node-daemon/adapters/image-mount.js';
import type { FuseServerConfig } from '../../../node-daemon/lazy/server-protocol.js';
import { startChunkServer, type ChunkServer } from './chunk-server.js';
import {
  buildLazyImage,
  lazyConfig,
  loopsOver,
  mountsUnder,
  processAlive,
  startLazyServer,
  waitFor,
  type LazyFixture,
  type ServerHandle,
} from './lazy-fixture.js';

interface Setup {
  dir: string;
  fixture: LazyFixture;
  chunks: ChunkServer;
  server: ServerHandle;
  attach(): Promise<ImageMount>;
}

async function setup(t: ExecutionContext, over: (dir: string) => Partial<FuseServerConfig> = () => ({})) {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-lazyf-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fixture = buildLazyImage(dir);
  const chunks = await startChunkServer(fixture.image, { chunkSize: 64 * 1024 });
  t.teardown(() => chunks.close());
  const server = await startLazyServer(lazyConfig(dir, [chunks.url], { chunkTimeoutMs: 2000, ...over(dir) }));
  const mounts: ImageMount[] = [];
  t.teardown(async () => {
    for (const m of mounts) m.release();
    await server.supervisor.stop();
    if (!t.passed) t.log(server.logText());
  });
  const attach = async (): Promise<ImageMount> => {
    const mount = await attachImage(await server.supervisor.open(chunks.index.imageId));
    mounts.push(mount);
    return mount;
  };
  return { dir, fixture, chunks, server, attach } satisfies Setup;
}

const fileIn = (mount: ImageMount, name: string): string => `/proc/self/fd/${mount.fd}/${name}`;

test.serial(
  'gateway unreachable: stored chunks keep serving, a missing one is EIO within lazyChunkTimeout',
  async (t) => {
    const { chunks, server, attach, fixture } = await setup(t);
    const first = await attach();
    t.deepEqual(await readFile(fileIn(first, 'data/f0')), fixture.files[0]);
    first.release();
    chunks.down = true;
    // A new squashfs mount has its own page cache: what it reads comes from the chunk store.
    const again = await attach();
    t.deepEqual(await readFile(fileIn(again, 'data/f0')), fixture.files[0]);
    const started = Date.now();
    const error = await t.throwsAsync(readFile(fileIn(again, 'data/f23')));
    t.is((error as NodeJS.ErrnoException).code, 'EIO');
    t.true(Date.now() - started < 2000 + 8000, `EIO after ${Date.now() - started} ms`);
    const log = server.logText();
    t.regex(log, new RegExp(`"image":"${chunks.index.imageId}","chunk":\\d+,.*chunk fetch failed; the read gets EIO`));
  },
);

test.serial(
  'a chunk whose bytes do not match is refused and fetched again; refused twice, the read gets EIO',
  async (t) => {
    const { chunks, server, attach, fixture } = await setup(t);
    const mount = await attach();
    const total = chunks.index.chunks.length;
    // Always wrong first (the kernel retries a failed page read, each retry fetching twice), while
    // nothing of f19 is stored; then wrong once, which the refetch mends.
    for (let n = 0; n < total; n++) chunks.corrupt.set(n, 1000);
    const error = await t.throwsAsync(readFile(fileIn(mount, 'data/f19')));
    t.is((error as NodeJS.ErrnoException).code, 'EIO');
    t.regex(server.logText(), /chunk refused twice/);
    // Fetches still in flight from the read above (kernel retries, readahead) would otherwise use
    // up the one wrong answer below: wait until no request came for two seconds (a loaded machine
    // can leave a kernel retry a second behind).
    const quiet = async (): Promise<void> => {
      for (let seen = -1, until = Date.now() + 20_000; seen !== chunks.chunkRequests.length && Date.now() < until;) {
        seen = chunks.chunkRequests.length;
        await new Promise((r) => setTimeout(r, 2000));
      }
    };
    await quiet();
    for (let n = 0; n < total; n++) chunks.corrupt.set(n, 1);
    const before = chunks.chunkRequests.length;
    t.deepEqual(await readFile(fileIn(mount, 'data/f7')), fixture.files[7]);
    // Readahead past the file may still be fetching (its first, wrong answer in, the second not yet).
    await quiet();
    const asked = chunks.chunkRequests.slice(before);
    const times = new Map<number, number>();
    for (const c of asked) times.set(c, (times.get(c) ?? 0) + 1);
    t.true(
      asked.length > 0 && [...times.values()].every((n) => n === 2),
      `each chunk fetched twice: ${JSON.stringify([...times.values()])}`,
    );
    // Nothing wrong reached the store.
    const store = join(server.config.cacheDir, 'chunks');
    for (const name of readdirSync(store)) t.is(sha256Hex(readFileSync(join(store, name))), name);
  },
);

test.serial(
  'the FUSE server killed -9 mid-read: the reader gets EIO, shifterd restarts it, new mounts work',
  async (t) => {
    const { chunks, server, attach, fixture } = await setup(t);
    const { supervisor, config } = server;
    const mount = await attach();
    const oldPid = supervisor.pid!;
    chunks.delayMs = 4000;
    const reading = readFile(fileIn(mount, 'data/f13'));
    await new Promise((r) => setTimeout(r, 500));
    process.kill(oldPid, 'SIGKILL');
    const started = Date.now();
    const error = await t.throwsAsync(reading);
    t.true(['EIO', 'ENOTCONN'].includes((error as NodeJS.ErrnoException).code ?? ''), String(error));
    t.true(Date.now() - started < 10_000);
    chunks.delayMs = 0;
    t.true(await waitFor(() => supervisor.restartCount === 1 && processAlive(supervisor.pid), 20_000));
    t.not(supervisor.pid, oldPid);
    mount.release();
    const fresh = await attach();
    t.deepEqual(await readFile(fileIn(fresh, 'data/f13')), fixture.files[13]);
    t.is(mountsUnder(config.mountpoint).length, 1, 'the dead mount was detached, the new one is there');
    fresh.release();
    await supervisor.stop();
    t.deepEqual(mountsUnder(config.mountpoint), []);
    t.true(await waitFor(() => loopsOver(config.mountpoint).length === 0, 5000));
  },
);

test.serial('chunk store disk full: reads are served from verified bytes, nothing half-written is kept', async (t) => {
  const { server, attach, fixture } = await setup(t, (dir) => {
    const small = join(dir, 'small');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'shifter-lazy-test', small]);
    t.teardown(() => execFileSync('umount', ['-l', small]));
    return { cacheDir: small, mountpoint: join(dir, 'mnt') };
  });
  const mount = await attach();
  for (const n of [2, 4, 6, 8]) t.deepEqual(await readFile(fileIn(mount, `data/f${n}`)), fixture.files[n]);
  t.regex(
    server.logText(),
    /"err":"disk full in [^"]*\(lazyImageCache\)[^"]*","msg":"chunk not kept in the chunk store"/,
  );
  const store = join(server.config.cacheDir, 'chunks');
  for (const name of readdirSync(store)) {
    t.false(name.startsWith('.tmp-'), `leftover ${name}`);
    t.is(sha256Hex(readFileSync(join(store, name))), name);
  }
});
