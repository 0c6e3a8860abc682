/**
 * Looks at a few top-level entries of an attached image, through the detached mount's fd
 * (/proc/self/fd/N is the image root), to decide which mount points the spec must provide.
 * lstat only: an image symlink (`var -> /somewhere`) counts as absent and is never followed.
 */
import { lstat } from 'node:fs/promises';
import type { ImageMount } from './native/image-mount.js';

export interface ImageLayout {
  /** Real directories in the image, by container path. */
  dirs: ReadonlySet<string>;
}

export const PROBED_DIRS = ['/etc', '/var', '/var/tmp', '/opt'] as const;

async function isDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

export async function probeImage(mount: ImageMount): Promise<ImageLayout> {
  const root = `/proc/self/fd/${mount.fd}`;
  const dirs = new Set<string>();
  for (const d of PROBED_DIRS) {
    const parent = d.slice(0, d.lastIndexOf('/')) || '/';
    // A path below a symlinked or missing parent is absent too.
    if (parent !== '/' && !dirs.has(parent)) continue;
    if (await isDir(root + d)) dirs.add(d);
  }
  return { dirs };
}
