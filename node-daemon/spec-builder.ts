/**
 * The EnvironmentSpec for one launch: the image read-only on a tmpfs scaffold, the site's /etc
 * files, /proc, /dev, /sys, /tmp, /var/tmp, siteFs and module siteFs with their flags,
 * optUdiImage and module copyPaths (bound read-only, not copied), then the user's volumes,
 * whose sources the native helper opens with the user's credentials.
 *
 * Site settings are compiled once per config load (compileSite), so a bad siteFs stops
 * shifterd at start or reload instead of failing every launch.
 *
 * sitePreMountHook/sitePostMountHook run (as root, cwd = the container root being built) around
 * the siteFs mounts, as upstream. A perNodeCache volume (user or site) becomes a fresh
 * filesystem private to the environment (see PerNodeCacheMount), within the site's
 * perNodeCacheSizeLimit and perNodeCacheAllowedFsType, which upstream parsed but never enforced.
 *
 * Modules: copyPath is bound read-only at /opt/udiImage/modules/<name> (under a bound
 * optUdiImage the mount point must exist there), module siteFs after the site's, then each
 * module's roothook (EnvironmentSpec.rootHooks), then the user's volumes. Userhooks run per launch
 * (launch-service.ts). A launch whose modules list devices gets its own /dev (devMounts).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ShifterError } from '../common/errors.js';
import {
  isPerNodeCacheFsType,
  PER_NODE_CACHE_FS_TYPES,
  type ShifterModuleConfig,
  type UdiRootConfig,
  type MountPropagationStyle,
} from '../common/config/udiroot-conf.js';
import { parseByteSize, parseVolumeTexts, type VolumeSpec } from './command/volumes.js';
import { checkDevicePattern, claimedByModules, type ModuleDevices } from './command/devices.js';
import type { HostDevEntry } from './adapters/host-devices.js';
import type {
  BindMount,
  EnvironmentSpec,
  FileEntry,
  MountPhase,
  MountSpec,
  PerNodeCacheFsType,
  PerNodeCacheMount,
  PerNodeCachePolicy,
  SiteHooks,
  SymlinkEntry,
} from './adapters/environment-spec.js';
import type { RootMount } from './adapters/image-mount.js';
import type { ImageLayout } from './image-probe.js';

export interface CompiledModule {
  config: ShifterModuleConfig;
  siteFs: VolumeSpec[];
}

export interface SiteSetup {
  siteFs: VolumeSpec[];
  hooks: SiteHooks;
  modules: ReadonlyMap<string, CompiledModule>;
  propagation: MountPropagationStyle;
  optUdiImage: string | undefined;
  /** Host /var/tmp exists (bound into the container when it does). */
  hostVarTmp: boolean;
  /** perNodeCachePath; unset: perNodeCache volumes are refused with a message saying so. */
  perNodeCacheDir: string | undefined;
  perNodeCachePolicy: PerNodeCachePolicy;
  /** moduleHookTimeout. */
  hookTimeoutSeconds: number;
  /** Where module devices come from: /dev, or the test override (deviceRootOverride). */
  deviceRoot: string;
}

/**
 * Tests have no GPU: they make character devices with mknod in a directory of their own and
 * point shifterd at it through its environment (root's to set), which only changes where
 * module_<name>_devices entries are looked up. It must be a root-owned directory nobody else can
 * write, so that no user can place device nodes there.
 */
export const DEVICE_ROOT_OVERRIDE_VARIABLE = 'SHIFTERD_TEST_DEVICE_ROOT';

function deviceRootOverride(config: UdiRootConfig): string {
  const dir = process.env[DEVICE_ROOT_OVERRIDE_VARIABLE];
  if (dir === undefined || dir === '') return '/dev';
  const st = dir.startsWith('/') ? statSync(dir, { throwIfNoEntry: false }) : undefined;
  if (st === undefined || !st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new ShifterError(
      'BAD_CONFIG',
      `${config.sourceFile}: ${DEVICE_ROOT_OVERRIDE_VARIABLE}=${dir} must be an absolute root-owned directory ` +
        'that only root can write (it is for tests only: unset it)',
    );
  }
  return dir;
}

function checkHookPath(config: UdiRootConfig, key: string, value: string | undefined): void {
  if (value !== undefined && !value.startsWith('/')) {
    throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: ${key}=${value} must be an absolute path`);
  }
}

function siteVolumes(config: UdiRootConfig, texts: readonly string[], where: string): VolumeSpec[] {
  try {
    const specs = parseVolumeTexts(texts, 'site');
    if (specs.some((s) => s.perNodeCache !== undefined) && config.perNodeCachePath === undefined) {
      throw new ShifterError(
        'BAD_CONFIG',
        `${config.sourceFile}: ${where} has a perNodeCache volume but perNodeCachePath is not set: set it to a local directory for the backing files`,
      );
    }
    return specs;
  } catch (e) {
    if (e instanceof ShifterError && e.code === 'BAD_ARGUMENT') {
      throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: ${where}: ${e.message}`);
    }
    throw e;
  }
}

export function compileSite(config: UdiRootConfig): SiteSetup {
  for (const [key, value] of [
    ['sitePreMountHook', config.sitePreMountHook],
    ['sitePostMountHook', config.sitePostMountHook],
  ] as const) {
    if (value !== undefined && !value.startsWith('/')) {
      throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: ${key}=${value} must be an absolute path`);
    }
  }
  const modules = new Map<string, CompiledModule>();
  for (const [name, m] of config.modules) {
    checkHookPath(config, `module_${name}_roothook`, m.roothook);
    checkHookPath(config, `module_${name}_userhook`, m.userhook);
    for (const d of m.devices) {
      const problem = checkDevicePattern(name, d);
      if (problem !== undefined) throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: ${problem}`);
    }
    if (m.copyPath !== undefined && !m.copyPath.startsWith('/')) {
      throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: module_${name}_copyPath must be an absolute path`);
    }
    modules.set(name, { config: m, siteFs: siteVolumes(config, m.siteFs, `module_${name}_siteFs`) });
  }
  if (config.optUdiImage !== undefined && !config.optUdiImage.startsWith('/')) {
    throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: optUdiImage must be an absolute path`);
  }
  if (config.optUdiImage !== undefined) {
    for (const m of modules.values()) {
      const point = `${config.optUdiImage}/modules/${m.config.name}`;
      if (m.config.copyPath !== undefined && !existsSync(point)) {
        throw new ShifterError(
          'BAD_CONFIG',
          `${config.sourceFile}: module_${m.config.name}_copyPath needs the directory ${point} (its mount point under optUdiImage): mkdir it`,
        );
      }
    }
  }
  return {
    perNodeCacheDir: config.perNodeCachePath,
    perNodeCachePolicy: perNodeCachePolicy(config),
    siteFs: siteVolumes(config, config.siteFs, 'siteFs'),
    hooks: { preMount: config.sitePreMountHook, postMount: config.sitePostMountHook },
    modules,
    propagation: config.mountPropagationStyle,
    optUdiImage: config.optUdiImage,
    hostVarTmp: existsSync('/var/tmp'),
    hookTimeoutSeconds: config.moduleHookTimeout,
    deviceRoot: deviceRootOverride(config),
  };
}

function perNodeCachePolicy(config: UdiRootConfig): PerNodeCachePolicy {
  if (config.perNodeCachePath !== undefined && !config.perNodeCachePath.startsWith('/')) {
    throw new ShifterError('BAD_CONFIG', `${config.sourceFile}: perNodeCachePath must be an absolute path`);
  }
  const policy: PerNodeCachePolicy = {};
  if (config.perNodeCacheSizeLimit !== undefined) {
    const limit = parseByteSize(config.perNodeCacheSizeLimit);
    if (limit === undefined) {
      throw new ShifterError(
        'BAD_CONFIG',
        `${config.sourceFile}: perNodeCacheSizeLimit=${config.perNodeCacheSizeLimit} is not a size like 100G`,
      );
    }
    policy.sizeLimitBytes = limit;
  }
  const fsTypes: PerNodeCacheFsType[] = [];
  for (const t of config.perNodeCacheAllowedFsType) {
    if (!isPerNodeCacheFsType(t)) {
      throw new ShifterError(
        'BAD_CONFIG',
        `${config.sourceFile}: perNodeCacheAllowedFsType lists '${t}': only ${PER_NODE_CACHE_FS_TYPES.join(' and ')} are supported`,
      );
    }
    fsTypes.push(t);
  }
  if (fsTypes.length > 0) policy.allowedFsTypes = fsTypes;
  if (config.mkfsXfsPath !== undefined) policy.mkfsXfsPath = config.mkfsXfsPath;
  return policy;
}

/** A perNodeCache volume as the native helper builds it, for the environment's own user. */
function perNodeCacheMount(
  v: VolumeSpec,
  site: SiteSetup,
  uid: number,
  gid: number,
  phase: MountPhase | undefined,
): PerNodeCacheMount {
  const cache = v.perNodeCache!;
  if (site.perNodeCacheDir === undefined) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `volume ${v.target}: perNodeCache volumes are not enabled on this system (perNodeCachePath is not set in udiRoot.conf); use a plain --volume`,
    );
  }
  return {
    kind: 'perNodeCache',
    target: v.target,
    sizeBytes: cache.sizeBytes,
    ...(cache.blockSizeBytes === undefined ? {} : { blockSize: cache.blockSizeBytes }),
    fsType: cache.fs,
    backingDir: site.perNodeCacheDir,
    uid,
    gid,
    ...(phase === undefined ? {} : { phase }),
  };
}

function volumeBind(v: VolumeSpec, defaultPropagation: MountPropagationStyle, phase?: MountPhase): BindMount {
  // Device nodes only ever come from a site's own /dev binds, never from a user's volume.
  const siteDev = v.origin === 'site' && (v.source === '/dev' || v.source.startsWith('/dev/'));
  return {
    kind: 'bind',
    source: v.source,
    target: v.target,
    readOnly: v.readOnly,
    // A user volume keeps the mounts below its source: without them it would reveal what they cover.
    recursive: v.recursive || v.source === '/dev' || v.origin === 'user',
    nosuid: true,
    nodev: !siteDev,
    propagation: v.propagation ?? defaultPropagation,
    asUser: v.origin === 'user',
    ...(phase === undefined ? {} : { phase }),
  };
}

export interface SpecInput {
  site: SiteSetup;
  image: RootMount;
  layout: ImageLayout;
  uid: number;
  gid: number;
  groups: readonly number[];
  etc: ReadonlyArray<FileEntry | SymlinkEntry>;
  modules: readonly CompiledModule[];
  userVolumes: readonly VolumeSpec[];
  /** A Slurm job's /var/hostsfile (one line per task slot); only job environments have one. */
  hostsfile?: string;
  /** Set when the modules list devices: the launch then gets its own /dev (devMounts). */
  devices?: LaunchDevices;
}

export interface LaunchDevices {
  /** The host's /dev. */
  host: readonly HostDevEntry[];
  modules: readonly ModuleDevices[];
  /** Names in site.deviceRoot the launch gets, from selectDevices. */
  names: readonly string[];
}

/**
 * /dev rebuilt on the scaffold instead of the host's /dev bound whole: each host entry bound
 * (character devices and /dev/pts with device access, other directories nodev), symlinks
 * copied, block devices and the character devices the modules claim left out; then the
 * devices the launch gets, bound one by one from the device root.
 */
function devMounts(d: LaunchDevices, deviceRoot: string): MountSpec[] {
  const out: MountSpec[] = [];
  for (const e of d.host) {
    const path = `/dev/${e.name}`;
    if (e.type === 'char' && claimedByModules(d.modules, e.name)) continue;
    if (e.type === 'symlink') out.push({ kind: 'symlink', target: path, linkTo: e.linkTo! });
    else if (e.type === 'char') out.push({ kind: 'bind', source: path, target: path, readOnly: false, nodev: false });
    else if (e.type === 'dir') {
      const nodev = e.name !== 'pts';
      out.push({ kind: 'bind', source: path, target: path, readOnly: false, recursive: true, nodev });
    } else if (e.type === 'socket' || e.type === 'fifo') {
      out.push({ kind: 'bind', source: path, target: path, readOnly: false });
    }
  }
  for (const name of d.names) {
    out.push({ kind: 'bind', source: join(deviceRoot, name), target: `/dev/${name}`, readOnly: false, nodev: false });
  }
  return out;
}

export function buildEnvironmentSpec(input: SpecInput): EnvironmentSpec {
  const { site } = input;
  const volume = (v: VolumeSpec, phase?: MountPhase): MountSpec =>
    v.perNodeCache !== undefined
      ? perNodeCacheMount(v, site, input.uid, input.gid, phase)
      : volumeBind(v, site.propagation, phase);
  const copyModules = input.modules.filter((m) => m.config.copyPath !== undefined);
  const needOpt = site.optUdiImage !== undefined || copyModules.length > 0;

  const { dirs } = input.layout;
  const mounts: MountSpec[] = [];
  // Missing top-level directories are made on the scaffold root; existing ones are rebuilt
  // one level down (scaffoldDirs) so files and mount points can be added inside them.
  const scaffoldDirs = ['/etc'];
  if (!dirs.has('/etc')) mounts.push({ kind: 'dir', target: '/etc', mode: 0o755 });
  mounts.push(...input.etc);
  mounts.push({ kind: 'proc', target: '/proc' });
  if (input.devices !== undefined) {
    if (dirs.has('/dev')) scaffoldDirs.push('/dev');
    else mounts.push({ kind: 'dir', target: '/dev', mode: 0o755 });
    mounts.push(...devMounts(input.devices, site.deviceRoot));
  } else {
    mounts.push({
      kind: 'bind',
      source: '/dev',
      target: '/dev',
      readOnly: false,
      recursive: true,
      nosuid: true,
      nodev: false,
    });
  }
  mounts.push({ kind: 'bind', source: '/sys', target: '/sys', readOnly: true, recursive: true });
  mounts.push({ kind: 'bind', source: '/tmp', target: '/tmp', readOnly: false });
  if (site.hostVarTmp) {
    if (!dirs.has('/var')) mounts.push({ kind: 'dir', target: '/var', mode: 0o755 });
    else if (!dirs.has('/var/tmp')) scaffoldDirs.push('/var');
    mounts.push({ kind: 'bind', source: '/var/tmp', target: '/var/tmp', readOnly: false });
  }
  if (input.hostsfile !== undefined) {
    if (!dirs.has('/var') && !site.hostVarTmp) mounts.push({ kind: 'dir', target: '/var', mode: 0o755 });
    else if (dirs.has('/var') && !scaffoldDirs.includes('/var')) scaffoldDirs.push('/var');
    mounts.push({ kind: 'file', target: '/var/hostsfile', content: input.hostsfile, mode: 0o644 });
  }
  if (needOpt && dirs.has('/opt')) scaffoldDirs.push('/opt');
  if (needOpt && !dirs.has('/opt')) mounts.push({ kind: 'dir', target: '/opt', mode: 0o755 });
  if (site.optUdiImage !== undefined) {
    mounts.push({ kind: 'bind', source: site.optUdiImage, target: '/opt/udiImage', readOnly: true, recursive: true });
  } else if (copyModules.length > 0) {
    mounts.push({ kind: 'dir', target: '/opt/udiImage', mode: 0o755 });
    mounts.push({ kind: 'dir', target: '/opt/udiImage/modules', mode: 0o755 });
  }
  for (const m of copyModules) {
    const target = `/opt/udiImage/modules/${m.config.name}`;
    // Under a bound optUdiImage the mount point must exist there (checked by compileSite).
    if (site.optUdiImage === undefined) mounts.push({ kind: 'dir', target, mode: 0o755 });
    mounts.push({ kind: 'bind', source: m.config.copyPath!, target, readOnly: true, recursive: true });
  }
  // The site hooks bracket the (contiguous) 'site' mounts; see EnvironmentSpec.hooks.
  for (const v of site.siteFs) mounts.push(volume(v, 'site'));
  for (const m of input.modules) for (const v of m.siteFs) mounts.push(volume(v));
  for (const v of input.userVolumes) mounts.push(volume(v, 'user'));

  const rootHooks = input.modules.flatMap((m) =>
    m.config.roothook === undefined
      ? []
      : [{ module: m.config.name, script: m.config.roothook, timeoutSeconds: site.hookTimeoutSeconds }],
  );
  const groups = [...new Set([input.gid, ...input.groups])];
  return {
    image: input.image,
    uid: input.uid,
    gid: input.gid,
    groups,
    scaffoldDirs,
    mounts,
    ...(site.hooks.preMount !== undefined || site.hooks.postMount !== undefined ? { hooks: site.hooks } : {}),
    ...(rootHooks.length > 0 ? { rootHooks } : {}),
    perNodeCachePolicy: site.perNodeCachePolicy,
  };
}
