/**
 * What the daemon asks `shifter-nshelper create-env` to build: one container environment for
 * one user on one image. The helper applies it in the "locked" sequence of
 * node-runtime-notes.md: every mount is made in a mount namespace owned by the initial user
 * namespace, then copied into a user-owned namespace, which locks each mount and its flags.
 *
 * Layout: the root is a tmpfs scaffold (read-only once built). Each top-level entry of the
 * image appears on it (directories as clones of the image subtree, symlinks and small files
 * copied), so images need no mount points at the top level. Directories listed in
 * `scaffoldDirs` are rebuilt the same way one level down (e.g. `/etc`, so that site files
 * can be written there and `/etc/passwd` can be added to an image that has none).
 *
 * Paths in `target` are absolute container paths, resolved inside the new root: an image
 * symlink on the path is followed inside the container root (RESOLVE_IN_ROOT: merged-/usr
 * `/lib -> usr/lib` works, `/evil -> /etc` means the container's /etc) only if it leads to the
 * image or the scaffold, never into a host bind. User volumes (asUser) and perNodeCache
 * targets never follow symlinks.
 * A missing mount point is created when its parent lies on the scaffold; under an image
 * directory it must exist in the image (or list that directory in `scaffoldDirs`).
 */
import type { MountPropagationStyle, PerNodeCacheFsType } from '../../common/config/udiroot-conf.js';
import type { RootMount } from './image-mount.js';

export type { MountPropagationStyle, PerNodeCacheFsType };

/**
 * Where a mount belongs in upstream's sequence. 'site' marks the site volume mounts (upstream's
 * global `siteFs`): the site hooks bracket them (see EnvironmentSpec.hooks). 'user' marks the
 * user's own volumes. Unset: a runtime mount (/etc files, /proc, /dev, module siteFs, ...).
 */
export type MountPhase = 'site' | 'user';

interface MountCommon {
  /** Default unset (a runtime mount). */
  phase?: MountPhase;
}

/** Bind of a host path. Flags are applied on the detached clone before it becomes visible. */
export interface BindMount extends MountCommon {
  kind: 'bind';
  /** Absolute host path. */
  source: string;
  /** Absolute container path. */
  target: string;
  readOnly: boolean;
  /** Clone the whole subtree (mounts below `source` too); needed for /dev and /sys. */
  recursive?: boolean;
  /** Default true. Only /dev binds should set it to false. */
  nosuid?: boolean;
  /** Default true. false for the /dev bind (device nodes must work there). */
  nodev?: boolean;
  /** Default false. */
  noexec?: boolean;
  /** Default 'private'. 'slave' receives later host mounts below `source` (autofs, etc.). */
  propagation?: MountPropagationStyle;
  /**
   * true for a USER volume: the source is opened with the user's fsuid/fsgid/groups, never as
   * root, so a user can only bind what they can reach on the host.
   */
  asUser?: boolean;
}

/** A regular file written on the scaffold (replaces what the image had there). */
export interface FileEntry extends MountCommon {
  kind: 'file';
  target: string;
  /** UTF-8 text; must not contain NUL. */
  content: string;
  /** Default 0o644. Owner is root. */
  mode?: number;
}

export interface SymlinkEntry extends MountCommon {
  kind: 'symlink';
  target: string;
  /** What the link points to, e.g. '/proc/mounts'. */
  linkTo: string;
}

export interface DirectoryEntry extends MountCommon {
  kind: 'dir';
  target: string;
  /** Default 0o755. */
  mode?: number;
}

export interface TmpfsMount extends MountCommon {
  kind: 'tmpfs';
  target: string;
  /** Bytes; default 64 MiB. */
  sizeBytes?: number;
  /** Default 0o1777. */
  mode?: number;
  /** Default false. */
  noexec?: boolean;
}

/** A new proc instance (nosuid, nodev, noexec). */
export interface ProcMount extends MountCommon {
  kind: 'proc';
  target: string;
}

/**
 * Upstream's perNodeCache volume (`--volume=/ignored:/cache:perNodeCache=size=1G[,bs=..][,fs=..]`):
 * a fresh filesystem private to this environment, on a sparse file made in `backingDir`
 * (`perNodeCache_uid<U>_gid<G>_<host>.<fs>.XXXXXX`, mode 0600) and attached to a read-write
 * autoclear loop device, mounted nosuid,nodev on `target`, its root owned by uid:gid. The file
 * is unlinked at once: its space returns when the environment and all its processes are gone.
 * Checked against EnvironmentSpec.perNodeCachePolicy.
 */
export interface PerNodeCacheMount extends MountCommon {
  kind: 'perNodeCache';
  target: string;
  sizeBytes: number;
  /** Filesystem block size in bytes (a power of two); default mkfs's. */
  blockSize?: number;
  fsType: PerNodeCacheFsType;
  /** udiRoot.conf perNodeCachePath (absolute host directory). */
  backingDir: string;
  /** Must equal the environment's uid and gid (never 0). */
  uid: number;
  gid: number;
}

/** udiRoot.conf's perNodeCache settings, enforced (upstream parsed them but did not). */
export interface PerNodeCachePolicy {
  /** perNodeCacheSizeLimit in bytes; unset: no limit. */
  sizeLimitBytes?: number;
  /** perNodeCacheAllowedFsType; unset or empty: ['xfs'] (upstream's only type). */
  allowedFsTypes?: PerNodeCacheFsType[];
  /** mkfsXfsPath; default /usr/sbin/mkfs.xfs. */
  mkfsXfsPath?: string;
  /** Default /usr/sbin/mkfs.ext4. */
  mkfsExt4Path?: string;
}

/**
 * Upstream's module_<name>_roothook: `/bin/sh SCRIPT` as root, cwd = the container root under
 * construction, in the helper's private mount namespace, with PATH=/usr/bin:/usr/sbin:/bin:/sbin
 * only and stdin on /dev/null. Its stdout and stderr come back as Environment.hookLog lines.
 * Killed with whatever it started after timeoutSeconds; a failure fails the environment with a
 * HookFailure (its exit code, its last stderr lines).
 */
export interface ModuleRootHook {
  module: string;
  script: string;
  timeoutSeconds: number;
}

export type MountSpec =
  BindMount | FileEntry | SymlinkEntry | DirectoryEntry | TmpfsMount | ProcMount | PerNodeCacheMount;

export interface EnvironmentSpec {
  /** The root's contents: a squashfs image, or a local: directory tree. */
  image: RootMount;
  uid: number;
  /** Primary gid. */
  gid: number;
  /**
   * Supplementary groups, from SO_PEERGROUPS or NSS, never from the client's message.
   * The primary gid is added when missing, group 0 is dropped. gid_map maps each to itself.
   */
  groups: number[];
  /** Container directories rebuilt on the scaffold, e.g. ['/etc', '/opt']; '/' is implicit. */
  scaffoldDirs: string[];
  /** Applied in order after the scaffold is built (put /dev before /dev/shm, etc.). */
  mounts: MountSpec[];
  /**
   * Upstream's sitePreMountHook / sitePostMountHook: absolute paths of scripts run as
   * `/bin/sh SCRIPT` as root, cwd = the container root under construction (relative paths
   * reach the scaffold; absolute ones the host), in the helper's private mount namespace, with
   * PATH=/usr/bin:/usr/sbin:/bin:/sbin only, stdin and stdout on /dev/null and no helper fds.
   * preMount runs just before the first mount with phase 'site', postMount just after the last
   * one (site mounts must be contiguous). With no site mount, both run, in that order, just
   * before the first 'user' mount, or after all mounts when there is none. A non-zero exit
   * fails the environment, naming the hook, its status and its last stderr line.
   */
  hooks?: SiteHooks;
  /**
   * Module roothooks, in module order: after every other mount (and the site hooks), just
   * before the first 'user' mount.
   */
  rootHooks?: ModuleRootHook[];
  /** Limits and tools for the perNodeCache mounts; unset: the defaults of PerNodeCachePolicy. */
  perNodeCachePolicy?: PerNodeCachePolicy;
}

export interface SiteHooks {
  preMount?: string;
  postMount?: string;
}

/** A created environment: the two fds keep the namespaces alive until close(). */
export interface Environment {
  userNsFd: number;
  mntNsFd: number;
  /** Milliseconds from the request sent to the helper to the fds received. */
  setupMs: number;
  /** Milliseconds the helper itself spent (spec read to fds sent), without process startup. */
  helperMs: number;
  /** What the roothooks printed, `module <name> roothook <stdout|stderr>: <line>` each. */
  hookLog: string[];
  close(): void;
}
