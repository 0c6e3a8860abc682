/**
 * Looks at a few top-level entries of an attached image, through the detached mount's fd
 * (/proc/self/fd/N is the image root), to decide which mount points the spec must provide.
 * lstat only: an image symlink (`var -> /somewhere`) counts as absent and is never followed.
 */
import { lstat } from 'node:fs/promises';
import type { RootMount } from './adapters/image-mount.js';

export interface ImageLayout {
  /** Real directories in the image, by container path. */
  dirs: ReadonlySet<string>;
}

export const PROBED_DIRS = ['/etc', '/var', '/var/tmp', '/opt', '/dev'] as const;

async function isDir(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** An image never changes while it is attached: probe each attached mount once. */
const layouts = new WeakMap<RootMount, Promise<ImageLayout>>();

export function probeImage(mount: RootMount): Promise<ImageLayout> {
  let layout = layouts.get(mount);
  if (layout === undefined) {
    layout = probe(mount);
    layouts.set(mount, layout);
  }
  return layout;
}

async function probe(mount: RootMount): Promise<ImageLayout> {
  const root = `/proc/self/fd/${mount.fd}`;
  const found = await Promise.all(PROBED_DIRS.map((d) => isDir(root + d)));
  const dirs = new Set<string>();
  PROBED_DIRS.forEach((d, i) => {
    const parent = d.slice(0, d.lastIndexOf('/')) || '/';
    // A path below a symlinked or missing parent is absent too (lstat of a path below a
    // symlink follows it, so the answer for the child is only taken when the parent is real).
    if (found[i] && (parent === '/' || dirs.has(parent))) dirs.add(d);
  });
  return { dirs };
}
