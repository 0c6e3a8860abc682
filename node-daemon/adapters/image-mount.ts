/**
 * A squashfs image attached once per node: a detached, read-only, nosuid, nodev mount held
 * by the daemon as one fd. Environments clone it (shared superblock). release() closes the fd;
 * the kernel drops the superblock and the autoclear loop device when no environment uses it.
 */
export interface ImageMount {
  /** The squashfs file this mount was made from. */
  readonly path: string;
  /** The detached mount fd (O_CLOEXEC). -1 once released. */
  readonly fd: number;
  /** e.g. '/dev/loop9'. */
  readonly loopDevice: string;
  release(): void;
}
