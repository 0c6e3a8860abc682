/**
 * A small real squashfs image for the lazy-cache tests (built at test time with mksquashfs):
 * 24 files of 160 KiB of incompressible bytes (about 3.9 MB, 60 chunks of 64 KiB) and a text
 * file, plus a running FUSE server over a chunk server for it, and the checks that nothing is
 * left behind.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { createLogger } from '../../../common/logger.js';
import { LazySupervisor } from '../../../node-daemon/lazy/lazy-supervisor.js';
import type { FuseServerConfig } from '../../../node-daemon/lazy/server-protocol.js';
import { parseMountinfo } from '../../../node-daemon/lazy/fusectl.js';

export const FILES = 24;
export const FILE_BYTES = 160 * 1024;
export const CHUNK = 64 * 1024;

export interface LazyFixture {
  image: string;
  /** The content of data/f<n>. */
  files: Buffer[];
}

export function buildLazyImage(dir: string): LazyFixture {
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'data'), { recursive: true });
  const files: Buffer[] = [];
  for (let n = 0; n < FILES; n++) {
    const bytes = randomBytes(FILE_BYTES);
    files.push(bytes);
    writeFileSync(join(root, 'data', `f${n}`), bytes);
  }
  writeFileSync(join(root, 'hello'), 'hello from a lazy image\n');
  const image = join(dir, 'image.sqfs');
  execFileSync('mksquashfs', [root, image, '-quiet', '-noappend', '-comp', 'gzip'], { stdio: 'ignore' });
  return { image, files };
}

export interface ServerHandle {
  supervisor: LazySupervisor;
  /** Everything the FUSE server logged. */
  logText: () => string;
  config: FuseServerConfig;
}

export function lazyConfig(dir: string, bases: string[], over: Partial<FuseServerConfig> = {}): FuseServerConfig {
  return {
    cacheDir: join(dir, 'cache'),
    mountpoint: join(dir, 'cache', 'mnt'),
    sizeBytes: 1024 ** 3,
    chunkTimeoutMs: 3000,
    profileWindowMs: 60_000,
    prefetchParallel: 4,
    bases,
    system: 'test',
    ...over,
  };
}

export async function startLazyServer(config: FuseServerConfig, factsTtlMs = 60_000): Promise<ServerHandle> {
  let text = '';
  const serverLog = new PassThrough();
  serverLog.setEncoding('utf8').on('data', (d: string) => {
    text += d;
  });
  const supervisor = new LazySupervisor({ config, log: createLogger('test', 'silent'), serverLog, factsTtlMs });
  await supervisor.start();
  return { supervisor, logText: () => text, config };
}

/** Mounts at or below `path` in this process's mount namespace. */
export function mountsUnder(path: string): string[] {
  return parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))
    .map((m) => m.mountpoint)
    .filter((m) => m === path || m.startsWith(`${path}/`));
}

/** Loop devices whose backing file is under `path` (losetup -a). */
export function loopsOver(path: string): string[] {
  return execFileSync('losetup', ['-a'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(path));
}

export function processAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(what: () => boolean, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (what()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return what();
}
