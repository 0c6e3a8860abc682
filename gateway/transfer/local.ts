/**
 * A system's local imageDir: the image files' paths, the completeness check, and moving a finished
 * file into place.
 */
import { access, chmod, copyFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { commitFile, temporaryNameFor } from '../../common/atomic-write.js';
import { asShifterError } from '../../common/errors.js';
import { diskFullError } from '../../common/disk-full.js';
import { chunkIndexPath } from '../chunks/index-file.js';
import type { PlatformConfig } from '../config/imagemanager.js';

export function imageFiles(platform: PlatformConfig, id: string): { image: string; meta: string; chunks: string } {
  return {
    image: join(platform.imageDir, `${id}.squashfs`),
    meta: join(platform.imageDir, `${id}.meta`),
    chunks: chunkIndexPath(platform.imageDir, id),
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Both files present: the image is complete on the system (meta is written last). */
export async function imageFilesComplete(platform: PlatformConfig, id: string): Promise<boolean> {
  const files = imageFiles(platform, id);
  return (await exists(files.image)) && (await exists(files.meta));
}

/**
 * Moves a finished file into `finalPath` through a temporary name, so the final name only ever
 * holds a complete file. When ExpandDirectory and imageDir share a filesystem a rename saves
 * copying the whole image (seconds for a large one); across filesystems it copies.
 * Mode 0600 as upstream: only root (the runtime) reads images, so ACLs cannot be bypassed.
 */
export async function transferFile(src: string, finalPath: string, imageDirKey: string): Promise<void> {
  const tmp = temporaryNameFor(finalPath);
  try {
    await rename(src, tmp).catch(async (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EXDEV') throw e;
      await copyFile(src, tmp);
    });
    await chmod(tmp, 0o600);
    await commitFile(tmp, finalPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw (
      diskFullError(e, dirname(finalPath), imageDirKey) ?? asShifterError(e, 'IO_ERROR', `cannot write ${finalPath}`)
    );
  }
}
