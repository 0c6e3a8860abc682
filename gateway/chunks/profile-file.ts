/**
 * `<id>.profile` next to the image: its prefetch profile (common/chunk-profile.ts). The first
 * profile a node sends wins: it was recorded on a cold start, which is what later cold starts
 * repeat, and letting every node overwrite it would make it flap between jobs. An admin resets it
 * (DELETE) when the image's start-up changed. The file appears whole or not at all: it is written
 * under a temporary name, synced, then hard-linked to its final name, which fails if a profile is
 * already there, so two nodes racing cannot both win.
 */
import { link, open, readFile, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncDirectory, temporaryNameFor } from '../../common/atomic-write.js';
import { asShifterError } from '../../common/errors.js';

export function profilePath(imageDir: string, id: string): string {
  return join(imageDir, `${id}.profile`);
}

export async function readProfile(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw asShifterError(e, 'IO_ERROR', `cannot read the prefetch profile ${path}`);
  }
}

/** Stores `bytes` unless a profile is already there: 'stored' or 'exists'. */
export async function storeFirstProfile(path: string, bytes: Uint8Array): Promise<'stored' | 'exists'> {
  const tmp = temporaryNameFor(path);
  try {
    const handle = await open(tmp, 'wx', 0o600);
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tmp, path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
      throw e;
    }
    await fsyncDirectory(dirname(path));
    return 'stored';
  } catch (e) {
    throw asShifterError(e, 'IO_ERROR', `cannot store the prefetch profile ${path}`);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/** Removes the profile; false when there was none. */
export async function removeProfile(path: string): Promise<boolean> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw asShifterError(e, 'IO_ERROR', `cannot remove the prefetch profile ${path}`);
  }
  await fsyncDirectory(dirname(path));
  return true;
}
