/** A detached mount held by the daemon as one fd (O_CLOEXEC); environments clone it. */
interface DetachedRoot {
  /** The squashfs file, or the local: directory, this mount was made from. */
  readonly path: string;
  /** The detached mount fd. -1 once released. */
  readonly fd: number;
  release(): void;
}

/**
 * A squashfs image attached once per node: read-only, nosuid, nodev, on an autoclear loop
 * device. release() closes the fd; the kernel drops the superblock and the loop device when no
 * environment uses it.
 */
export interface ImageMount extends DetachedRoot {
  readonly kind: 'squashfs';
  /** e.g. '/dev/loop9'. */
  readonly loopDevice: string;
}

/**
 * A `local:` directory tree opened as the user (no symlink on its path), cloned with the mounts
 * below it, nosuid and nodev. Its device and inode tell a swapped directory from the one cached.
 */
export interface LocalRootMount extends DetachedRoot {
  readonly kind: 'local';
  /** `major:minor` of the directory's filesystem. */
  readonly device: string;
  readonly inode: string;
}

export type RootMount = ImageMount | LocalRootMount;
