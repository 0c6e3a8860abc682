/**
 * Anything we write becomes visible only when complete: write to a temporary name in the same
 * directory, fsync the file, rename over the final name, fsync the directory. A crash at any
 * point leaves either the old file or the new one, plus at worst a `.tmp-*` leftover that no
 * reader treats as ready (see `isTemporaryName`).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TMP_PREFIX = '.tmp-';

export function temporaryNameFor(finalPath: string): string {
  return join(dirname(finalPath), `${TMP_PREFIX}${basename(finalPath)}.${randomBytes(6).toString('hex')}`);
}

export function isTemporaryName(name: string): boolean {
  return basename(name).startsWith(TMP_PREFIX);
}

export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Renames a finished temporary file into place after syncing it, then syncs the directory. */
export async function commitFile(tmpPath: string, finalPath: string): Promise<void> {
  const handle = await open(tmpPath, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmpPath, finalPath);
  await fsyncDirectory(dirname(finalPath));
}

export async function writeFileAtomic(finalPath: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  const tmp = temporaryNameFor(finalPath);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, finalPath);
    await fsyncDirectory(dirname(finalPath));
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
