/**
 * Opening the file an import names, on the gateway host, as safely as it can be named by a
 * client: an absolute path to a regular file (not a symlink, not a device or FIFO), opened without
 * following a final symlink and checked again through the open descriptor, no larger than
 * `Limits.MaxImageBytes`, with a squashfs 4.0 superblock that fits the file. A caller who is not an
 * admin must be able to read the file themselves (the gateway reads it as root): its own mode
 * bits through the descriptor, and search permission on every directory above it.
 */
import { constants, type Stats } from 'node:fs';
import { lstat, open, stat, type FileHandle } from 'node:fs/promises';
import { dirname, isAbsolute, normalize } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import type { Identity } from '../auth/session.js';
import type { ImageLimits } from '../config/imagemanager.js';
import { checkSquashfsSuperblock, SUPERBLOCK_BYTES } from './squashfs-superblock.js';

export interface OpenedImageFile {
  path: string;
  handle: FileHandle;
  size: number;
}

/** The permission bit (r=4, x=1) of `st` that applies to `who`, as the kernel picks it. */
function allows(st: Stats, who: Identity, bit: 4 | 1): boolean {
  if (st.uid === who.uid) return (st.mode & (bit << 6)) !== 0;
  if (who.gids.includes(st.gid) || st.gid === who.gid) return (st.mode & (bit << 3)) !== 0;
  return (st.mode & bit) !== 0;
}

function unreadable(path: string, who: Identity): ShifterError {
  return new ShifterError(
    'PERMISSION_DENIED',
    `${who.user} cannot read ${path}: import only a file you can read yourself (check its mode and its directories)`,
  );
}

async function assertCallerCanReach(path: string, who: Identity): Promise<void> {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    const st = await stat(dir);
    if (!allows(st, who, 1)) throw unreadable(path, who);
    if (dir === '/') return;
  }
}

/** `reader`: the caller when they are not an admin (their read access is checked), else null. */
export async function openImageFile(
  rawPath: string,
  reader: Identity | null,
  limits: ImageLimits,
): Promise<OpenedImageFile> {
  if (!isAbsolute(rawPath)) {
    throw new ShifterError('BAD_ARGUMENT', `filepath "${rawPath}" is not absolute; name the file from /`);
  }
  const path = normalize(rawPath);
  const before = await lstat(path).catch((e: NodeJS.ErrnoException) => {
    throw new ShifterError('NOT_FOUND', `cannot import ${path}: ${e.code ?? 'not found'} on the gateway host`);
  });
  if (before.isSymbolicLink()) {
    throw new ShifterError('BAD_ARGUMENT', `${path} is a symbolic link; name the image file itself`);
  }
  if (!before.isFile()) throw new ShifterError('BAD_ARGUMENT', `${path} is not a regular file; name a squashfs image`);
  if (reader) await assertCallerCanReach(path, reader);
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(
    (e: NodeJS.ErrnoException) => {
      throw new ShifterError('BAD_ARGUMENT', `cannot open ${path} (${e.code ?? e.message}); name a regular file`);
    },
  );
  try {
    const st = await handle.stat();
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) {
      throw new ShifterError('BAD_ARGUMENT', `${path} changed while it was being opened; import it again`);
    }
    if (reader && !allows(st, reader, 4)) throw unreadable(path, reader);
    if (st.size > limits.maxImageBytes) {
      throw new ShifterError(
        'LIMIT_EXCEEDED',
        `${path} is ${st.size} bytes, over the gateway's Limits.MaxImageBytes (${limits.maxImageBytes}); ` +
          'ask the site to raise it or import a smaller image',
      );
    }
    const sb = Buffer.alloc(SUPERBLOCK_BYTES);
    const { bytesRead } = await handle.read(sb, 0, SUPERBLOCK_BYTES, 0);
    checkSquashfsSuperblock(sb.subarray(0, bytesRead), st.size, path);
    return { path, handle, size: st.size };
  } catch (e) {
    await handle.close();
    throw e;
  }
}
