/**
 * The FUSE file system of lazy images: a flat, read-only directory with one file per open image,
 * `<id>.squashfs`, whose bytes LazyImages produces. It runs in the FUSE server process only
 * (fuse-server-main.ts): that process never reads, stats or mounts its own mount point, because
 * a process that serves FUSE and waits on it deadlocks (node-runtime-notes.md).
 */
import { createRequire } from 'node:module';
import { describeError } from '../../common/errors.js';
import { isImageId, type ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import type { LazyImages } from './lazy-images.js';

interface FuseStat {
  mtime: Date;
  atime: Date;
  ctime: Date;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
}

type Done<T = never> = (errOrValue: number, value?: T) => void;

interface FuseOps {
  readdir(path: string, cb: (err: number, names?: string[]) => void): void;
  getattr(path: string, cb: (err: number, stat?: FuseStat) => void): void;
  open(path: string, flags: number, cb: (err: number, fd?: number) => void): void;
  read(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Done): void;
  release(path: string, fd: number, cb: Done): void;
}

interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
}

interface FuseConstructor {
  new (mnt: string, ops: FuseOps, opts: Record<string, unknown>): FuseInstance;
  ENOENT: number;
  EIO: number;
  EROFS: number;
}

const Fuse = createRequire(import.meta.url)('fuse-native') as FuseConstructor;
const SUFFIX = '.squashfs';
const EPOCH = new Date(0);

function stat(mode: number, size: number): FuseStat {
  return { mtime: EPOCH, atime: EPOCH, ctime: EPOCH, size, mode, uid: 0, gid: 0, nlink: 1 };
}

/** `/<id>.squashfs` -> id; anything else undefined. */
function imageOf(path: string): ImageId | undefined {
  if (!path.startsWith('/') || !path.endsWith(SUFFIX)) return undefined;
  const id = path.slice(1, -SUFFIX.length);
  return isImageId(id) ? id : undefined;
}

export function imageFileName(id: ImageId): string {
  return `${id}${SUFFIX}`;
}

function fuseOps(images: LazyImages, log: Logger): FuseOps {
  return {
    readdir(path, cb) {
      if (path !== '/') return cb(Fuse.ENOENT);
      cb(0, images.list().map(imageFileName));
    },
    getattr(path, cb) {
      if (path === '/') return cb(0, stat(0o40555, 0));
      const id = imageOf(path);
      const size = id === undefined ? undefined : images.size(id);
      if (size === undefined) return cb(Fuse.ENOENT);
      cb(0, stat(0o100444, size));
    },
    open(path, flags, cb) {
      const id = imageOf(path);
      if (id === undefined || images.size(id) === undefined) return cb(Fuse.ENOENT);
      // O_ACCMODE: the files are read-only.
      if ((flags & 3) !== 0) return cb(Fuse.EROFS);
      cb(0, 0);
    },
    read(path, _fd, buf, len, pos, cb) {
      const id = imageOf(path);
      if (id === undefined) return cb(Fuse.ENOENT);
      images.read(id, buf.subarray(0, len), pos).then(
        (n) => cb(n),
        (e: unknown) => {
          log.error({ image: id, offset: pos, length: len, err: describeError(e) }, 'read failed: EIO');
          cb(Fuse.EIO);
        },
      );
    },
    release(_path, _fd, cb) {
      cb(0);
    },
  };
}

/**
 * Mounts the images at `mountpoint`. There is no unmount here: fuse-native's runs fusermount,
 * and the supervisor in shifterd takes the mount down with umount2 when this process ends.
 */
export function mountImages(mountpoint: string, images: LazyImages, log: Logger): Promise<void> {
  const fuse = new Fuse(mountpoint, fuseOps(images, log), {
    mkdir: true,
    force: false,
    fsname: 'shifter-lazy',
    // An image file's bytes and size never change (its name is its content digest): the kernel
    // may keep its pages across opens and its attributes for as long as it likes.
    kernelCache: true,
    attrTimeout: 3600,
    entryTimeout: 3600,
    // Our own fetch deadline answers first; this only guards against a bug leaving a read unanswered.
    timeout: false,
  });
  return new Promise((resolve, reject) => {
    fuse.mount((err) => {
      if (err) reject(err);
      else resolve();
    });
  });
}
