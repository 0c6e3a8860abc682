/**
 * Turns an EnvironmentSpec into the spec of `shifter-nshelper create-env`: NUL-terminated
 * tokens (the grammar is in native/README.md and native/nshelper/spec.c). Pure, so it is checked
 * without root. The helper enforces every invariant of the spec itself (native/README.md, "What
 * the helper enforces"); the checks here only refuse earlier with a message in the user's terms.
 */
import { ShifterError } from '../../common/errors.js';
import type {
  EnvironmentSpec,
  ModuleRootHook,
  MountSpec,
  PerNodeCacheMount,
  PerNodeCachePolicy,
} from './environment-spec.js';

/** The helper's MAX_GROUPS (native/nshelper/spec.h): the gid_map extents the kernel accepts. */
const MAX_GROUPS = 340;

function checkPath(what: string, p: string): string {
  if (!p.startsWith('/') || p.includes('\0') || p.split('/').includes('..')) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${what} "${p}" must be an absolute path without ".." (fix the configuration or the --volume option)`,
    );
  }
  return p;
}

function checkTarget(p: string): string {
  checkPath('mount target', p);
  if (p.replace(/\/+$/, '') === '') throw new ShifterError('BAD_ARGUMENT', 'a mount target cannot be "/"');
  return p;
}

function checkId(what: string, n: number): number {
  if (!Number.isInteger(n) || n <= 0 || n >= 2 ** 32 - 1) {
    throw new ShifterError('BAD_ARGUMENT', `${what} ${n} is not a valid non-root id`);
  }
  return n;
}

function octal(mode: number): string {
  return (mode & 0o7777).toString(8);
}

function formatBytes(n: number): string {
  for (const [unit, size] of [
    ['T', 2 ** 40],
    ['G', 2 ** 30],
    ['M', 2 ** 20],
    ['K', 2 ** 10],
  ] as const) {
    if (n >= size && n % size === 0) return `${n / size}${unit}`;
  }
  return `${n} bytes`;
}

function cacheTokens(m: PerNodeCacheMount, spec: EnvironmentSpec): string[] {
  const policy: PerNodeCachePolicy = spec.perNodeCachePolicy ?? {};
  const what = `perNodeCache on ${m.target}`;
  if (!Number.isSafeInteger(m.sizeBytes) || m.sizeBytes <= 0) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${what}: size ${m.sizeBytes} is not a positive number of bytes (use e.g. perNodeCache=size=10G)`,
    );
  }
  if (policy.sizeLimitBytes !== undefined && m.sizeBytes > policy.sizeLimitBytes) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${what}: size ${formatBytes(m.sizeBytes)} is over this site's limit of ${formatBytes(policy.sizeLimitBytes)} (perNodeCacheSizeLimit): ask for less`,
    );
  }
  const allowed = policy.allowedFsTypes?.length ? policy.allowedFsTypes : ['xfs'];
  if (!allowed.includes(m.fsType)) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${what}: filesystem "${m.fsType}" is not allowed on this site (perNodeCacheAllowedFsType: ${allowed.join(' ')}): use fs=${allowed[0]}`,
    );
  }
  const minBlock = m.fsType === 'xfs' ? 512 : 1024;
  if (
    m.blockSize !== undefined &&
    (!Number.isInteger(m.blockSize) ||
      m.blockSize < minBlock ||
      m.blockSize > 65536 ||
      (m.blockSize & (m.blockSize - 1)) !== 0)
  ) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${what}: block size ${m.blockSize} must be a power of two from ${minBlock} to 65536 for ${m.fsType}`,
    );
  }
  if (m.uid !== spec.uid || m.gid !== spec.gid) {
    throw new ShifterError(
      'INTERNAL',
      `${what}: owner ${m.uid}:${m.gid} is not the environment's user ${spec.uid}:${spec.gid}`,
    );
  }
  const mkfs =
    m.fsType === 'xfs' ? (policy.mkfsXfsPath ?? '/usr/sbin/mkfs.xfs') : (policy.mkfsExt4Path ?? '/usr/sbin/mkfs.ext4');
  return [
    'cache',
    checkTarget(m.target),
    String(m.sizeBytes),
    String(m.blockSize ?? 0),
    m.fsType,
    checkPath('perNodeCachePath', m.backingDir),
    checkPath(`mkfs for ${m.fsType}`, mkfs),
    String(m.uid),
    String(m.gid),
  ];
}

function mountTokens(m: MountSpec, spec: EnvironmentSpec): string[] {
  switch (m.kind) {
    case 'bind': {
      const flags: string[] = [];
      if (m.readOnly) flags.push('ro');
      if (m.recursive) flags.push('rec');
      if (m.nosuid === false) flags.push('suid');
      if (m.nodev === false) flags.push('dev');
      if (m.noexec) flags.push('noexec');
      flags.push(m.propagation ?? 'private');
      if (m.asUser) flags.push('user');
      return ['bind', checkPath('bind source', m.source), checkTarget(m.target), flags.join(',')];
    }
    case 'file':
      if (m.content.includes('\0'))
        throw new ShifterError('BAD_ARGUMENT', `file ${m.target}: content must not contain NUL bytes`);
      return ['file', checkTarget(m.target), octal(m.mode ?? 0o644), m.content];
    case 'symlink':
      if (m.linkTo.includes('\0') || m.linkTo === '')
        throw new ShifterError('BAD_ARGUMENT', `symlink ${m.target}: empty or invalid link text`);
      return ['symlink', checkTarget(m.target), m.linkTo];
    case 'dir':
      return ['dir', checkTarget(m.target), octal(m.mode ?? 0o755)];
    case 'tmpfs':
      return [
        'tmpfs',
        checkTarget(m.target),
        octal(m.mode ?? 0o1777),
        String(m.sizeBytes ?? 64 * 1024 * 1024),
        m.noexec ? 'noexec' : '',
      ];
    case 'proc':
      return ['proc', checkTarget(m.target)];
    case 'perNodeCache':
      return cacheTokens(m, spec);
  }
}

function rootHookTokens(h: ModuleRootHook): string[] {
  if (!/^[A-Za-z0-9.-]{1,64}$/.test(h.module)) {
    throw new ShifterError('BAD_CONFIG', `module name '${h.module}' must be letters, digits, '-' or '.'`);
  }
  if (!Number.isInteger(h.timeoutSeconds) || h.timeoutSeconds < 1 || h.timeoutSeconds > 86400) {
    throw new ShifterError('BAD_CONFIG', `moduleHookTimeout ${h.timeoutSeconds} must be 1..86400 seconds`);
  }
  return ['roothook', h.module, checkPath(`module_${h.module}_roothook`, h.script), String(h.timeoutSeconds)];
}

/**
 * The mounts as helper tokens, with the site hooks placed around the site mounts and the module
 * roothooks just before the user's volumes.
 */
function mountListTokens(spec: EnvironmentSpec): string[] {
  const { mounts, hooks } = spec;
  const site = mounts.flatMap((m, i) => (m.phase === 'site' ? [i] : []));
  const first = site[0];
  const last = site[site.length - 1];
  if (first !== undefined && last !== undefined && last - first + 1 !== site.length) {
    throw new ShifterError(
      'INTERNAL',
      'the site mounts (phase "site") must be contiguous in the mount list: the site hooks run around them',
    );
  }
  const hookTokens = (name: string, script: string | undefined): string[] =>
    script === undefined ? [] : ['hook', name, checkPath(`${name} script`, script)];
  const pre = hookTokens('sitePreMountHook', hooks?.preMount);
  const post = hookTokens('sitePostMountHook', hooks?.postMount);
  const firstUser = mounts.findIndex((m) => m.phase === 'user');
  const before = first ?? (firstUser >= 0 ? firstUser : mounts.length);
  const after = last !== undefined ? last + 1 : before;
  const roots = (spec.rootHooks ?? []).flatMap(rootHookTokens);
  const userStart = firstUser >= 0 ? Math.max(firstUser, after) : mounts.length;
  const tokens: string[] = [];
  mounts.forEach((m, i) => {
    if (i === before) tokens.push(...pre);
    if (i === after) tokens.push(...post);
    if (i === userStart) tokens.push(...roots);
    tokens.push(...mountTokens(m, spec));
  });
  if (before === mounts.length) tokens.push(...pre);
  if (after === mounts.length) tokens.push(...post);
  if (userStart === mounts.length) tokens.push(...roots);
  return tokens;
}

export function encodeSpec(spec: EnvironmentSpec): Buffer {
  checkId('uid', spec.uid);
  checkId('gid', spec.gid);
  // Like upstream, group 0 is never carried into a container (only the primary gid may not be 0).
  const groups = [...new Set([...spec.groups.filter((g) => g !== 0), spec.gid])];
  groups.forEach((g) => checkId('group', g));
  if (groups.length > MAX_GROUPS) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `user has ${groups.length} groups; at most ${MAX_GROUPS} can be mapped into a container`,
    );
  }
  const tokens = ['uid', String(spec.uid), 'gid', String(spec.gid), 'groups', groups.join(',')];
  for (const dir of spec.scaffoldDirs) tokens.push('scaffold', checkTarget(dir).replace(/\/+$/, ''));
  tokens.push(...mountListTokens(spec));
  tokens.push('end');
  return Buffer.from(tokens.map((t) => `${t}\0`).join(''), 'utf8');
}
