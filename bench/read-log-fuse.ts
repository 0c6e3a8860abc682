/**
 * For bench/chunk-size.ts: serves one file read-only over FUSE as `<mnt>/image` and appends
 * `<offset> <length>` to a log for every read the kernel sends, which is exactly what a node's
 * lazy FUSE server would be asked for. Its own process (a process must never read what it serves
 * over FUSE: node-runtime-notes.md). Prints `ready` once mounted; the caller unmounts it, then
 * sends SIGTERM.
 * Usage: node dist/bench/read-log-fuse.js FILE MNT LOG
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';

interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
}
type Cb = (...args: unknown[]) => void;
type FuseConstructor = (new (mnt: string, ops: Record<string, unknown>, opts: object) => FuseInstance) & {
  ENOENT: number;
};

const Fuse = createRequire(import.meta.url)('fuse-native') as FuseConstructor;
const [file, mnt, logPath] = process.argv.slice(2) as [string, string, string];
const fd = openSync(file, 'r');
const size = fstatSync(fd).size;
const log = openSync(logPath, 'a');
const now = new Date();
const stat = (mode: number, bytes: number) => ({
  mtime: now,
  atime: now,
  ctime: now,
  nlink: 1,
  size: bytes,
  mode,
  uid: 0,
  gid: 0,
});

const fuse = new Fuse(
  mnt,
  {
    getattr(path: string, cb: Cb) {
      if (path === '/') return cb(0, stat(0o40555, 4096));
      if (path === '/image') return cb(0, stat(0o100444, size));
      return cb(Fuse.ENOENT);
    },
    readdir(path: string, cb: Cb) {
      return path === '/' ? cb(0, ['image']) : cb(Fuse.ENOENT);
    },
    open(_path: string, _flags: number, cb: Cb) {
      cb(0, 1);
    },
    release(_path: string, _fd: number, cb: Cb) {
      cb(0);
    },
    read(_path: string, _fd: number, buf: Buffer, len: number, pos: number, cb: Cb) {
      writeSync(log, `${pos} ${len}\n`);
      cb(pos >= size ? 0 : readSync(fd, buf, 0, Math.min(len, size - pos), pos));
    },
  },
  { mkdir: true },
);

fuse.mount((err) => {
  if (err) {
    process.stderr.write(`read-log-fuse: cannot mount ${mnt}: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write('ready\n');
});

process.on('SIGTERM', () => {
  closeSync(fd);
  closeSync(log);
  process.exit(0);
});
