/**
 * `udiRoot.conf`: the site configuration read by shifterimg and the node daemon, and by the
 * launcher for one key only (`shifterdSocket`, see below). Same format and keys as upstream
 * (src/UdiRootConfig.c, udiRoot.conf.example.in) so existing files keep working:
 *   - `key=value`, key and value trimmed, keys case-sensitive, no quoting;
 *   - a line whose first non-blank character is `#` is a comment;
 *   - a value ending in `\` continues on the next line, the pieces joined with a space;
 *   - space-separated lists; list keys given twice accumulate, like upstream.
 *
 * Differences from upstream, on purpose:
 *   - an unknown key is a warning (upstream refused the whole file, so one stray key from a newer
 *     or older version stopped every container on the machine);
 *   - deprecated keys (autoLoadKernelModule, kmodBasePath, kmodCacheFile, optionalSshdAsRoot,
 *     nodeContextPrefix) warn "ignored";
 *   - a line without `=` and a scalar key given twice are warnings (upstream skipped or overwrote
 *     silently);
 *   - which keys are required depends on who reads the file: `requireUdiRootKeys` is called by
 *     each program for the keys it uses, so shifterimg does not need `ddPath`;
 *   - bad numbers and booleans are errors naming the line (upstream's strtol read "yes" as 0);
 *   - unknown `module_<name>_<subkey>` subkeys are warnings (upstream ignored them silently);
 *   - `gatewayTimeout` unset or 0 means 30 s per gateway request, not "no limit".
 *
 * Keys this project adds (also listed in `documentedNewKeys`):
 *   - `mungeSocketPath`: the munged socket clients use to make credentials
 *     (default: munge's own default, /run/munge/munge.socket.2);
 *   - `moduleHookTimeout`: seconds a module roothook or userhook may run before it is killed
 *     and the launch fails (default 30; upstream had no limit, so a hung hook hung every launch);
 *   - `module_<name>_devices`: `;`-separated host character devices (globs allowed) shown in the
 *     container's /dev; `/dev/nvidia<N>` narrowed to the launch's GPUs (node-daemon/command/devices.ts);
 *   - `shifterdSocket`: the node daemon's launch socket (default /run/shifter/shifterd.sock).
 *     shifterd listens there unless given --socket. The launcher (`shifter`, C) reads this one key
 *     with its own small parser of the line rules above (native/launcher/udiroot.c), from the
 *     udiRoot.conf at $SHIFTER_UDIROOT_CONF, else the path compiled into it (native/build.sh:
 *     $SHIFTER_DEFAULT_UDIROOT_CONF at build time, default /etc/shifter/udiRoot.conf); a missing
 *     file or key means the default, an unreadable file is a one-line error. `$SHIFTERD_SOCKET`
 *     overrides both (shifterd authenticates callers by SO_PEERCRED, so a user pointing their own
 *     launcher elsewhere fools only themselves).
 *   - `siteContact`: who users should ask for help (an address, a URL), named by the launcher when
 *     shifterd cannot be reached on the node; read by the launcher the way it reads shifterdSocket;
 *   - `lazyImageCache` (a local directory), `lazyImageCacheSize` (bytes, with an optional k/m/g/t
 *     suffix, powers of 1024) and `lazyChunkTimeout` (seconds a read waits for a missing chunk
 *     before it gets EIO, default 30): with the first two set, an image that is not in
 *     imagePath is read lazily, chunk by chunk, from imageGateway (node-daemon/lazy/).
 *     `lazyPrologStageTimeout` (seconds, default 60, 0: off): how long the Slurm prolog waits for
 *     a lazy image's superblock, tables and recorded profile to arrive before it lets the job
 *     start (the rest keeps arriving in the background).
 *     `lazyFactsTtl` (seconds, default 60, 0 allowed): how long shifterd reuses what the gateway
 *     recorded for a lazy image (index digest, `.meta` with its ACLs) before asking again.
 *   - `lazyChunkCaches`: HTTP caches (base URLs separated by commas or spaces, e.g. a rack's then
 *     the site's nginx) asked for index, chunk and profile GETs before imageGateway.
 *
 * This module is pure; reading the file, finding it and checking its owner live in
 * udiroot-file.ts.
 */
import { ShifterError } from '../errors.js';
import { isImageType, IMAGE_TYPES, type ImageType } from '../image-descriptor.js';
import { DEFAULT_MUNGE_SOCKET } from '../munge.js';

/**
 * Propagation of a bind mount: udiRoot.conf's mountPropagationStyle, the slave/private volume
 * flags and the helper's bind flags all use these words, defined here once.
 */
export const MOUNT_PROPAGATION_STYLES = ['private', 'slave'] as const;
export type MountPropagationStyle = (typeof MOUNT_PROPAGATION_STYLES)[number];

export function isMountPropagationStyle(s: string): s is MountPropagationStyle {
  return (MOUNT_PROPAGATION_STYLES as readonly string[]).includes(s);
}

/**
 * Filesystems a perNodeCache volume can have: perNodeCacheAllowedFsType, the volume's fs= option
 * and the helper's cache op (native/nshelper/spec.c checks the same two).
 */
export const PER_NODE_CACHE_FS_TYPES = ['xfs', 'ext4'] as const;
export type PerNodeCacheFsType = (typeof PER_NODE_CACHE_FS_TYPES)[number];

export function isPerNodeCacheFsType(s: string): s is PerNodeCacheFsType {
  return (PER_NODE_CACHE_FS_TYPES as readonly string[]).includes(s);
}

export interface ShifterModuleConfig {
  readonly name: string;
  readonly userhook?: string;
  readonly roothook?: string;
  readonly siteEnv: readonly string[];
  readonly siteEnvPrepend: readonly string[];
  readonly siteEnvAppend: readonly string[];
  readonly siteEnvUnset: readonly string[];
  readonly conflict: readonly string[];
  /** Raw siteFs values, one per line, for the volume-map parser. */
  readonly siteFs: readonly string[];
  readonly copyPath?: string;
  readonly enabled: boolean;
  /**
   * Host character devices the module shows in the container's /dev, as written (`;`-separated
   * paths under /dev, `*` and `?` globs allowed), e.g. `/dev/nvidiactl;/dev/nvidia*`.
   */
  readonly devices: readonly string[];
}

export interface UdiRootConfig {
  /** The file this came from, for messages. */
  readonly sourceFile: string;

  readonly udiMount?: string;
  readonly loopMount?: string;
  readonly imagePath?: string;
  readonly udiRootPath?: string;
  readonly sitePreMountHook?: string;
  readonly sitePostMountHook?: string;
  readonly optUdiImage?: string;
  readonly etcPath?: string;

  readonly allowLocalChroot: boolean;
  readonly allowLibcPwdCalls: boolean;
  readonly populateEtcDynamically: boolean;
  readonly usersToImport: readonly string[];
  /** false (the default): remount the container root read-only after setup. */
  readonly mountUdiRootWritable: boolean;
  readonly maxGroupCount: number;

  readonly modprobePath?: string;
  readonly insmodPath?: string;
  readonly cpPath?: string;
  readonly mvPath?: string;
  readonly chmodPath?: string;
  readonly ddPath?: string;
  readonly mkfsXfsPath?: string;
  readonly rootfsType?: string;

  /**
   * Seconds each request to a gateway may take (shifterimg, shifterd's lookups), as written;
   * unset or 0 means the gateway client's default, 30 s (DEFAULT_GATEWAY_TIMEOUT_SECONDS in
   * common/gateway-client/client.ts). Upstream's curl had no limit then, so a silent gateway
   * hung shifterimg forever.
   */
  readonly gatewayTimeout?: number;
  /** Raw siteFs values, one per siteFs line (each may hold several `;`-separated maps). */
  readonly siteFs: readonly string[];
  readonly siteEnv: readonly string[];
  readonly siteEnvAppend: readonly string[];
  readonly siteEnvPrepend: readonly string[];
  readonly siteEnvUnset: readonly string[];
  readonly imageGateway: readonly string[];
  /** HTTP caches (base URLs) lazy images ask for index, chunk and profile GETs before the gateways. */
  readonly lazyChunkCaches: readonly string[];
  readonly batchType?: string;
  readonly system?: string;
  readonly defaultImageType: ImageType;

  readonly perNodeCachePath?: string;
  /** Kept as written (e.g. `10G`): upstream never enforced it. */
  readonly perNodeCacheSizeLimit?: string;
  readonly perNodeCacheAllowedFsType: readonly string[];
  readonly mountPropagationStyle: MountPropagationStyle;

  readonly defaultModules: readonly string[];
  readonly modules: ReadonlyMap<string, ShifterModuleConfig>;
  /** Seconds a module roothook or userhook may run before it is killed (default 30). */
  readonly moduleHookTimeout: number;

  readonly mungeSocketPath: string;
  readonly shifterdSocket?: string;
  /** Who users should ask for help; the launcher names it when shifterd is down. */
  readonly siteContact?: string;

  /** Set only with both lazyImageCache and lazyImageCacheSize (one without the other is an error). */
  readonly lazyImageCache?: LazyImageCacheConfig;
}

export interface LazyImageCacheConfig {
  /** The chunk store and the FUSE mount point live under it. */
  readonly dir: string;
  /** Bytes of chunks kept; least recently used chunks beyond it are evicted. */
  readonly sizeBytes: number;
  /** Seconds a read waits for a missing chunk before it gets EIO. */
  readonly chunkTimeoutSeconds: number;
  /** Seconds the Slurm prolog waits for the job's image's profile to be staged; 0: it does not stage. */
  readonly prologStageTimeoutSeconds: number;
  /** Seconds an image's facts (index digest, `.meta`) are reused before the gateway is asked again. */
  readonly factsTtlSeconds: number;
}

export const DEFAULT_LAZY_CHUNK_TIMEOUT_SECONDS = 30;
export const DEFAULT_LAZY_PROLOG_STAGE_TIMEOUT_SECONDS = 60;
export const DEFAULT_LAZY_FACTS_TTL_SECONDS = 60;

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** `512m`, `10G`, `1048576`: bytes, the suffix a power of 1024; undefined when it is not a size. */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+)\s*([kmgt]?)b?$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * SIZE_UNITS[m[2].toLowerCase()];
  return Number.isSafeInteger(n) ? n : undefined;
}

export interface ConfigWarning {
  readonly line: number;
  readonly key: string;
  /** Complete, `<file>:<line>: ...`, ready to print. */
  readonly message: string;
}

export interface ParsedUdiRootConf {
  readonly config: UdiRootConfig;
  readonly warnings: readonly ConfigWarning[];
}

export const documentedNewKeys = [
  'mungeSocketPath',
  'shifterdSocket',
  'siteContact',
  'moduleHookTimeout',
  'lazyImageCache',
  'lazyImageCacheSize',
  'lazyChunkTimeout',
  'lazyPrologStageTimeout',
  'lazyFactsTtl',
  'lazyChunkCaches',
] as const;

export const DEFAULT_MODULE_HOOK_TIMEOUT_SECONDS = 30;

const STRING_KEYS = [
  'udiMount',
  'loopMount',
  'imagePath',
  'udiRootPath',
  'sitePreMountHook',
  'sitePostMountHook',
  'optUdiImage',
  'etcPath',
  'modprobePath',
  'insmodPath',
  'cpPath',
  'mvPath',
  'chmodPath',
  'ddPath',
  'mkfsXfsPath',
  'rootfsType',
  'batchType',
  'system',
  'perNodeCachePath',
  'perNodeCacheSizeLimit',
  'mungeSocketPath',
  'shifterdSocket',
  'siteContact',
  'lazyImageCache',
  'lazyImageCacheSize',
] as const;
const BOOLEAN_KEYS = [
  'allowLocalChroot',
  'allowLibcPwdCalls',
  'populateEtcDynamically',
  'mountUdiRootWritable',
] as const;
const LIST_KEYS = [
  'usersToImport',
  'siteEnv',
  'siteEnvAppend',
  'siteEnvPrepend',
  'siteEnvUnset',
  'imageGateway',
  'perNodeCacheAllowedFsType',
] as const;
export const DEPRECATED_KEYS = [
  'autoLoadKernelModule',
  'kmodBasePath',
  'kmodCacheFile',
  'optionalSshdAsRoot',
  'nodeContextPrefix',
];
/** Keys upstream once documented but never (or no longer) parsed; a hint beats "unknown". */
const HISTORICAL_KEYS: Record<string, string> = {
  siteResources: 'GPU support moved to modules (module_<name>_*)',
  udiImagePath: 'use optUdiImage',
};

type StringKey = (typeof STRING_KEYS)[number];
type BooleanKey = (typeof BOOLEAN_KEYS)[number];
type ListKey = (typeof LIST_KEYS)[number];

const OTHER_KEYS = [
  'maxGroupCount',
  'gatewayTimeout',
  'lazyChunkTimeout',
  'lazyPrologStageTimeout',
  'lazyFactsTtl',
  'lazyChunkCaches',
  'siteFs',
  'defaultImageType',
  'mountPropagationStyle',
  'defaultModules',
  'moduleHookTimeout',
] as const;

export type KnownKey = StringKey | BooleanKey | ListKey | (typeof OTHER_KEYS)[number];

/** Every key the parser understands, for documentation and tests. */
export const KNOWN_KEYS: readonly string[] = [...STRING_KEYS, ...BOOLEAN_KEYS, ...LIST_KEYS, ...OTHER_KEYS];

/** One line per key for udiRoot.conf(5) (tools/man/); a key the parser knows cannot lack one. */
export const KEY_DESCRIPTIONS: Readonly<Record<KnownKey, string>> = {
  udiMount: 'where the container root is assembled on the node, e.g. /var/udiMount',
  loopMount: 'where image files are loop-mounted, e.g. /var/udiLoopMount',
  imagePath: 'the directory of the images (<id>.squashfs and <id>.meta), shared with the gateway',
  udiRootPath: 'the installation prefix of Shifter, e.g. /opt/shifter',
  sitePreMountHook: 'script run as root before the site mounts of an environment',
  sitePostMountHook: 'script run as root after the site mounts of an environment',
  optUdiImage: 'the directory shown at /opt/udiImage in every container',
  etcPath: 'files copied into the container /etc (unless populateEtcDynamically is set)',
  modprobePath: 'path of modprobe (an upstream key)',
  insmodPath: 'path of insmod (an upstream key)',
  cpPath: 'path of cp (an upstream key)',
  mvPath: 'path of mv (an upstream key)',
  chmodPath: 'path of chmod (an upstream key)',
  ddPath: 'path of dd (an upstream key)',
  mkfsXfsPath: 'mkfs.xfs, used to format perNodeCache files',
  rootfsType: 'filesystem of the container root, e.g. tmpfs',
  batchType: 'the batch system, e.g. slurm',
  system: "this cluster's name at the gateway (the gateway's Platforms key)",
  perNodeCachePath: 'where perNodeCache volume files are created on the node',
  perNodeCacheSizeLimit: 'largest perNodeCache volume a user may ask for, e.g. 10G',
  mungeSocketPath: "munged's socket for credentials (default /run/munge/munge.socket.2)",
  shifterdSocket: "shifterd's launch socket (default /run/shifter/shifterd.sock); the launcher reads it too",
  siteContact: 'who users should ask for help (address or URL); shifter names it when shifterd is down',
  lazyImageCache: 'local directory of the lazy image cache (set with lazyImageCacheSize)',
  lazyImageCacheSize:
    'bytes the lazy image cache keeps (chunks and whole images), with an optional k/m/g/t suffix, e.g. 50g; ' +
    'images up to half of it are kept whole once every chunk is cached',
  allowLocalChroot: '1: users may run a local directory as an image (local:/path)',
  allowLibcPwdCalls: '1: the daemon may use getpwnam/getgrnam to build /etc/passwd and /etc/group',
  populateEtcDynamically: "1: write the container's /etc/passwd and /etc/group from the host's",
  mountUdiRootWritable: '1: leave the container root writable after setup (default: read-only)',
  usersToImport: 'users copied into the container /etc/passwd (space-separated)',
  siteEnv: 'NAME=VALUE pairs set in every container (space-separated)',
  siteEnvAppend: 'NAME=VALUE pairs appended to a variable in every container',
  siteEnvPrepend: 'NAME=VALUE pairs prepended to a variable in every container',
  siteEnvUnset: 'variables removed in every container',
  imageGateway: 'gateway URLs, tried in order (space-separated), e.g. http://imagegw:8000',
  perNodeCacheAllowedFsType: 'filesystems a perNodeCache volume may have: xfs, ext4',
  maxGroupCount: "how many of the user's groups are listed in the container /etc/group",
  gatewayTimeout: 'seconds each gateway request may take (default and 0: 30)',
  lazyChunkTimeout: 'seconds a read waits for a missing chunk before it fails with EIO (default 30)',
  lazyPrologStageTimeout:
    "seconds the Slurm prolog waits for a lazy image's profile to be staged (default 60; 0: no staging)",
  lazyFactsTtl: "seconds shifterd reuses a lazy image's facts (index digest, .meta) before asking again (default 60)",
  lazyChunkCaches: 'HTTP caches asked for chunks before imageGateway, in order (commas or spaces)',
  siteFs: 'host paths bound into every container, from:to[:flags], several separated by ";"',
  defaultImageType: 'image type when a name has none: docker, custom, id, local (default docker)',
  mountPropagationStyle: 'propagation of site and user mounts: private or slave (default private)',
  defaultModules: 'modules loaded when the user names none (comma-separated)',
  moduleHookTimeout: 'seconds a module roothook or userhook may run before it is killed (default 30)',
};

/** The module_<name>_<setting> settings, one line each, for udiRoot.conf(5). */
export const MODULE_SETTING_DESCRIPTIONS: Readonly<Record<string, string>> = {
  siteEnv: 'NAME=VALUE pairs set when the module is loaded',
  siteEnvPrepend: 'NAME=VALUE pairs prepended to a variable',
  siteEnvAppend: 'NAME=VALUE pairs appended to a variable',
  siteEnvUnset: 'variables removed',
  conflict: 'modules that cannot be loaded together with this one',
  userhook: 'script run as the user inside the container before the command',
  roothook: 'script run as root while the environment is built',
  copyPath: 'directory copied into the container at /opt/udiImage/modules/<name>',
  siteFs: 'host paths bound into the container, as siteFs',
  enabled: '0: the module cannot be loaded',
  devices: 'host character devices shown in the container /dev, ";"-separated, globs allowed',
};

const MODULE_LIST_SUBKEYS = ['siteEnv', 'siteEnvPrepend', 'siteEnvAppend', 'siteEnvUnset', 'conflict'] as const;
type ModuleListSubkey = (typeof MODULE_LIST_SUBKEYS)[number];

interface MutableModule {
  name: string;
  userhook?: string;
  roothook?: string;
  siteEnv: string[];
  siteEnvPrepend: string[];
  siteEnvAppend: string[];
  siteEnvUnset: string[];
  conflict: string[];
  siteFs: string[];
  copyPath?: string;
  enabled: boolean;
  devices: string[];
}

interface Entry {
  key: string;
  value: string;
  line: number;
}

function splitList(value: string): string[] {
  return value.split(/\s+/).filter((s) => s.length > 0);
}

/** Joins continuation lines and drops comments and blanks; reports lines without `=`. */
function entries(text: string, warn: (line: number, key: string, msg: string) => void): Entry[] {
  const out: Entry[] = [];
  const lines = text.split(/\r?\n/);
  let pending: Entry | undefined;
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    const raw = lines[i] ?? '';
    if (pending) {
      const piece = raw.trim();
      const continues = piece.endsWith('\\');
      const text = (continues ? piece.slice(0, -1) : piece).trim();
      pending.value = text.length > 0 ? (pending.value.length > 0 ? `${pending.value} ${text}` : text) : pending.value;
      if (!continues) {
        out.push(pending);
        pending = undefined;
      }
      continue;
    }
    const trimmed = raw.trim();
    if (trimmed.length === 0 || trimmed.startsWith('#')) continue;
    const eq = trimmed.indexOf('=');
    if (eq < 0) {
      warn(lineNo, '', `line has no '=' and was ignored (expected key=value): ${trimmed.slice(0, 60)}`);
      continue;
    }
    const key = trimmed.slice(0, eq).trim();
    let value = trimmed.slice(eq + 1).trim();
    if (key.length === 0) {
      warn(lineNo, '', `line has no key before '=' and was ignored`);
      continue;
    }
    const continues = value.endsWith('\\');
    if (continues) value = value.slice(0, -1).trim();
    const entry = { key, value, line: lineNo };
    if (continues) pending = entry;
    else out.push(entry);
  }
  if (pending) out.push(pending);
  return out;
}

function badValue(fileName: string, e: Entry, expected: string): ShifterError {
  return new ShifterError(
    'BAD_CONFIG',
    `${fileName}:${e.line}: ${e.key}=${e.value} is not valid: expected ${expected}`,
  );
}

function parseBoolean(fileName: string, e: Entry): boolean {
  // Upstream used strtol(value) != 0; accept the words people actually write too.
  if (/^[+-]?\d+$/.test(e.value)) return Number(e.value) !== 0;
  if (/^(true|yes|on)$/i.test(e.value)) return true;
  if (/^(false|no|off)$/i.test(e.value)) return false;
  throw badValue(fileName, e, '0 or 1');
}

function parseCount(fileName: string, e: Entry): number {
  if (!/^\d+$/.test(e.value)) throw badValue(fileName, e, 'a whole number >= 0');
  const n = Number(e.value);
  if (!Number.isSafeInteger(n)) throw badValue(fileName, e, 'a whole number >= 0');
  return n;
}

function parseSeconds(fileName: string, e: Entry): number {
  if (!/^\d+(\.\d+)?$/.test(e.value)) throw badValue(fileName, e, 'a number of seconds, e.g. 30');
  return Number(e.value);
}

/**
 * Parses the text of a udiRoot.conf. Throws ShifterError('BAD_CONFIG') for values that cannot
 * mean anything (bad number, unknown image type, bad propagation style); everything merely
 * surprising is returned as a warning.
 */
export function parseUdiRootConf(text: string, fileName: string): ParsedUdiRootConf {
  const warnings: ConfigWarning[] = [];
  const warn = (line: number, key: string, msg: string): void => {
    warnings.push({ line, key, message: `${fileName}:${line}: ${msg}` });
  };

  const strings: Partial<Record<StringKey, string>> = {};
  const booleans: Partial<Record<BooleanKey, boolean>> = {};
  const lists: Record<ListKey, string[]> = {
    usersToImport: [],
    siteEnv: [],
    siteEnvAppend: [],
    siteEnvPrepend: [],
    siteEnvUnset: [],
    imageGateway: [],
    perNodeCacheAllowedFsType: [],
  };
  const lazyChunkCaches: string[] = [];
  const siteFs: string[] = [];
  const modules = new Map<string, MutableModule>();
  let maxGroupCount = 0;
  let gatewayTimeout: number | undefined;
  let lazyChunkTimeout: number | undefined;
  let lazyPrologStageTimeout: number | undefined;
  let lazyFactsTtl: number | undefined;
  let defaultImageType: ImageType = 'docker';
  let mountPropagationStyle: MountPropagationStyle = 'private';
  let defaultModules: string[] = [];
  let moduleHookTimeout = DEFAULT_MODULE_HOOK_TIMEOUT_SECONDS;
  const seenScalars = new Map<string, number>();

  const noteScalar = (e: Entry): void => {
    const previous = seenScalars.get(e.key);
    if (previous !== undefined) {
      warn(e.line, e.key, `${e.key} is set again (first on line ${previous}); the value on line ${e.line} wins`);
    }
    seenScalars.set(e.key, e.line);
  };

  for (const e of entries(text, warn)) {
    const key = e.key;
    if ((STRING_KEYS as readonly string[]).includes(key)) {
      noteScalar(e);
      strings[key as StringKey] = e.value;
    } else if ((BOOLEAN_KEYS as readonly string[]).includes(key)) {
      noteScalar(e);
      booleans[key as BooleanKey] = parseBoolean(fileName, e);
    } else if ((LIST_KEYS as readonly string[]).includes(key)) {
      lists[key as ListKey].push(...splitList(e.value));
    } else if (key === 'siteFs') {
      if (e.value.length > 0) siteFs.push(e.value);
    } else if (key === 'maxGroupCount') {
      noteScalar(e);
      maxGroupCount = parseCount(fileName, e);
    } else if (key === 'gatewayTimeout') {
      noteScalar(e);
      gatewayTimeout = parseSeconds(fileName, e);
    } else if (key === 'lazyChunkTimeout') {
      noteScalar(e);
      lazyChunkTimeout = parseSeconds(fileName, e);
      if (lazyChunkTimeout <= 0) throw badValue(fileName, e, 'a number of seconds above 0, e.g. 30');
    } else if (key === 'lazyPrologStageTimeout') {
      noteScalar(e);
      lazyPrologStageTimeout = parseSeconds(fileName, e);
    } else if (key === 'lazyFactsTtl') {
      noteScalar(e);
      lazyFactsTtl = parseSeconds(fileName, e);
    } else if (key === 'lazyChunkCaches') {
      for (const url of e.value.split(/[\s,]+/).filter((u) => u.length > 0)) {
        if (!/^https?:\/\/[^/\s]+\/?$/.test(url)) {
          throw badValue(fileName, e, 'base URLs of HTTP caches, e.g. http://rack-cache:8080,http://site-cache:8080');
        }
        lazyChunkCaches.push(url);
      }
    } else if (key === 'defaultImageType') {
      noteScalar(e);
      if (!isImageType(e.value)) throw badValue(fileName, e, `one of ${IMAGE_TYPES.join(', ')}`);
      defaultImageType = e.value;
    } else if (key === 'mountPropagationStyle') {
      noteScalar(e);
      if (!isMountPropagationStyle(e.value)) throw badValue(fileName, e, MOUNT_PROPAGATION_STYLES.join(' or '));
      mountPropagationStyle = e.value;
    } else if (key === 'defaultModules') {
      noteScalar(e);
      defaultModules = e.value
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s.length > 0);
    } else if (key === 'moduleHookTimeout') {
      noteScalar(e);
      moduleHookTimeout = parseSeconds(fileName, e);
      if (!Number.isInteger(moduleHookTimeout) || moduleHookTimeout < 1 || moduleHookTimeout > 86400) {
        throw badValue(fileName, e, 'a whole number of seconds from 1 to 86400');
      }
    } else if (key.startsWith('module_')) {
      assignModuleKey(modules, e, fileName, warn);
    } else if (DEPRECATED_KEYS.includes(key)) {
      warn(e.line, key, `${key} is deprecated and ignored; remove it`);
    } else if (HISTORICAL_KEYS[key] !== undefined) {
      warn(e.line, key, `${key} is no longer supported and was ignored: ${HISTORICAL_KEYS[key]}`);
    } else {
      warn(e.line, key, `unknown key '${key}' was ignored (check the spelling; keys are case-sensitive)`);
    }
  }

  for (const name of defaultModules) {
    if (!modules.has(name)) {
      warn(
        seenScalars.get('defaultModules') ?? 0,
        'defaultModules',
        `defaultModules names '${name}', but no module_${name}_* keys define it`,
      );
    }
  }

  const frozenModules = new Map<string, ShifterModuleConfig>();
  for (const [name, m] of modules) frozenModules.set(name, { ...m });

  const config: UdiRootConfig = {
    sourceFile: fileName,
    ...strings,
    allowLocalChroot: booleans.allowLocalChroot ?? false,
    allowLibcPwdCalls: booleans.allowLibcPwdCalls ?? false,
    populateEtcDynamically: booleans.populateEtcDynamically ?? false,
    mountUdiRootWritable: booleans.mountUdiRootWritable ?? false,
    usersToImport: lists.usersToImport,
    maxGroupCount,
    gatewayTimeout,
    siteFs,
    siteEnv: lists.siteEnv,
    siteEnvAppend: lists.siteEnvAppend,
    siteEnvPrepend: lists.siteEnvPrepend,
    siteEnvUnset: lists.siteEnvUnset,
    imageGateway: lists.imageGateway,
    lazyChunkCaches,
    defaultImageType,
    perNodeCacheAllowedFsType: lists.perNodeCacheAllowedFsType,
    mountPropagationStyle,
    defaultModules,
    modules: frozenModules,
    moduleHookTimeout,
    mungeSocketPath: strings.mungeSocketPath ?? DEFAULT_MUNGE_SOCKET,
    lazyImageCache: lazyCacheConfig(fileName, strings, lazyChunkTimeout, lazyPrologStageTimeout, lazyFactsTtl),
  };
  return { config, warnings };
}

function lazyCacheConfig(
  fileName: string,
  strings: Partial<Record<StringKey, string>>,
  chunkTimeout: number | undefined,
  prologStageTimeout: number | undefined,
  factsTtl: number | undefined,
): LazyImageCacheConfig | undefined {
  const dir = strings.lazyImageCache;
  const size = strings.lazyImageCacheSize;
  if (dir === undefined && size === undefined) return undefined;
  if (dir === undefined || size === undefined) {
    throw new ShifterError(
      'BAD_CONFIG',
      `${fileName}: lazyImageCache and lazyImageCacheSize go together; set both (e.g. lazyImageCache=/var/cache/shifter ` +
        'and lazyImageCacheSize=50g) or neither',
    );
  }
  if (!dir.startsWith('/')) {
    throw new ShifterError('BAD_CONFIG', `${fileName}: lazyImageCache=${dir} is not valid: expected an absolute path`);
  }
  const sizeBytes = parseByteSize(size);
  if (sizeBytes === undefined || sizeBytes <= 0) {
    throw new ShifterError(
      'BAD_CONFIG',
      `${fileName}: lazyImageCacheSize=${size} is not valid: expected bytes above 0 with an optional k/m/g/t suffix, e.g. 50g`,
    );
  }
  return {
    dir,
    sizeBytes,
    chunkTimeoutSeconds: chunkTimeout ?? DEFAULT_LAZY_CHUNK_TIMEOUT_SECONDS,
    prologStageTimeoutSeconds: prologStageTimeout ?? DEFAULT_LAZY_PROLOG_STAGE_TIMEOUT_SECONDS,
    factsTtlSeconds: factsTtl ?? DEFAULT_LAZY_FACTS_TTL_SECONDS,
  };
}

/** `module_<name>_<subkey>`: the name cannot contain `_` because upstream splits on it. */
function assignModuleKey(
  modules: Map<string, MutableModule>,
  e: Entry,
  fileName: string,
  warn: (line: number, key: string, msg: string) => void,
): void {
  const parts = e.key.split('_');
  if (parts.length !== 3 || !parts[1] || !parts[2]) {
    warn(e.line, e.key, `'${e.key}' is not module_<name>_<setting> (module names cannot contain '_'); ignored`);
    return;
  }
  const name = parts[1];
  const subkey = parts[2];
  let m = modules.get(name);
  if (!m) {
    m = {
      name,
      siteEnv: [],
      siteEnvPrepend: [],
      siteEnvAppend: [],
      siteEnvUnset: [],
      conflict: [],
      siteFs: [],
      enabled: true,
      devices: [],
    };
    modules.set(name, m);
  }
  if ((MODULE_LIST_SUBKEYS as readonly string[]).includes(subkey)) {
    // Upstream replaced the list on each occurrence; accumulating matches the top-level keys.
    m[subkey as ModuleListSubkey].push(...splitList(e.value));
  } else if (subkey === 'userhook' || subkey === 'roothook' || subkey === 'copyPath') {
    m[subkey] = e.value;
  } else if (subkey === 'siteFs') {
    if (e.value.length > 0) m.siteFs.push(e.value);
  } else if (subkey === 'enabled') {
    m.enabled = parseBoolean(fileName, e);
  } else if (subkey === 'devices') {
    m.devices.push(
      ...e.value
        .split(';')
        .map((d) => d.trim())
        .filter((d) => d.length > 0),
    );
  } else {
    const hint = subkey.toLowerCase() === 'copypath' ? ` (did you mean module_${name}_copyPath?)` : '';
    warn(e.line, e.key, `unknown module setting '${subkey}' in ${e.key} was ignored${hint}`);
  }
}

/** Keys a program can insist on; list keys count as missing when empty. */
export type RequirableKey =
  | 'udiMount'
  | 'loopMount'
  | 'imagePath'
  | 'udiRootPath'
  | 'etcPath'
  | 'rootfsType'
  | 'modprobePath'
  | 'insmodPath'
  | 'cpPath'
  | 'mvPath'
  | 'chmodPath'
  | 'ddPath'
  | 'mkfsXfsPath'
  | 'optUdiImage'
  | 'system'
  | 'imageGateway'
  | 'shifterdSocket'
  | 'perNodeCachePath';

const REQUIRED_EXAMPLES: Record<RequirableKey, string> = {
  udiMount: '/var/udiMount',
  loopMount: '/var/udiLoopMount',
  imagePath: '/images',
  udiRootPath: '/opt/shifter',
  etcPath: '/etc/shifter/shifter_etc_files',
  rootfsType: 'tmpfs',
  modprobePath: '/sbin/modprobe',
  insmodPath: '/sbin/insmod',
  cpPath: '/bin/cp',
  mvPath: '/bin/mv',
  chmodPath: '/bin/chmod',
  ddPath: '/bin/dd',
  mkfsXfsPath: '/sbin/mkfs.xfs',
  optUdiImage: '/opt/shifter/opt/udiImage',
  system: 'mycluster',
  imageGateway: 'http://imagegw:5000',
  shifterdSocket: '/run/shifter/shifterd.sock',
  perNodeCachePath: '/tmp',
};

/** Throws one BAD_CONFIG error naming every missing key and the file to add them to. */
export function requireUdiRootKeys(config: UdiRootConfig, keys: readonly RequirableKey[]): void {
  const missing = keys.filter((k) => {
    const v = config[k];
    if (Array.isArray(v)) return v.length === 0;
    return typeof v !== 'string' || v.length === 0;
  });
  if (missing.length === 0) return;
  const lines = missing.map((k) => `${k}=${REQUIRED_EXAMPLES[k]}`).join(', ');
  throw new ShifterError(
    'BAD_CONFIG',
    `${config.sourceFile}: ${missing.length === 1 ? 'key' : 'keys'} ${missing.join(', ')} ` +
      `${missing.length === 1 ? 'is' : 'are'} missing: add e.g. ${lines}`,
  );
}
