/**
 * Volume maps: `from:to[:flag[:flag...]]`, several separated by `;`, optionally quoted as a whole.
 * Upstream silently dropped characters outside `[A-Za-z0-9_:.+-/]`, which turned a typo into a
 * bind of some other directory; here anything we cannot take literally is rejected with a reason.
 * Two rule sets: USER maps (--volume, SHIFTER_VOLUME) may not hide the files the site controls,
 * SITE maps (siteFs, module siteFs) may do almost anything.
 */
import { posix } from 'node:path';
import {
  isPerNodeCacheFsType,
  PER_NODE_CACHE_FS_TYPES,
  type MountPropagationStyle,
  type PerNodeCacheFsType,
} from '../../common/config/udiroot-conf.js';
import { ShifterError } from '../../common/errors.js';

export type VolumeOrigin = 'user' | 'site';

export interface PerNodeCache {
  sizeBytes: number;
  blockSizeBytes: number | undefined;
  method: 'loop';
  fs: PerNodeCacheFsType;
}

export interface VolumeSpec {
  /** Absolute, normalized host path. */
  source: string;
  /** Absolute, normalized path inside the container. */
  target: string;
  readOnly: boolean;
  recursive: boolean;
  /** Undefined: the site default (mountPropagationStyle). */
  propagation: MountPropagationStyle | undefined;
  perNodeCache: PerNodeCache | undefined;
  origin: VolumeOrigin;
}

const USER_FLAGS = new Set(['ro', 'perNodeCache']);

/** Targets a user may not mount on or under (the site's /etc files, the runtime's own trees). */
const USER_FORBIDDEN_TREES = ['/etc', '/var', '/opt/udiImage', '/proc', '/dev', '/sys'];
/** Allowed exceptions inside the trees above (upstream issue #262). */
const USER_ALLOWED_TREES = ['/var/tmp'];
const SITE_FORBIDDEN_TARGETS = new Set([
  '/',
  '/opt',
  '/etc',
  '/var',
  '/etc/passwd',
  '/etc/group',
  '/etc/nsswitch.conf',
]);

const SIZE_UNITS: Record<string, number> = { b: 0, k: 1, m: 2, g: 3, t: 4, p: 5, e: 6 };

function bad(spec: string, why: string): ShifterError {
  return new ShifterError('BAD_ARGUMENT', `volume '${spec}': ${why}`);
}

function isUnder(path: string, tree: string): boolean {
  return path === tree || path.startsWith(tree + '/');
}

/** upstream parseBytes: a number with an optional b/k/m/g/t/p/e suffix in powers of 1024. */
export function parseByteSize(text: string): number | undefined {
  const m = /^(\d+)([bkmgtpe])?$/i.exec(text.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * 1024 ** (SIZE_UNITS[(m[2] ?? 'b').toLowerCase()] ?? 0);
  return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

function normalizePath(spec: string, which: 'source' | 'target', raw: string): string {
  if (raw === '') throw bad(spec, `the ${which} path is empty`);
  if (!raw.startsWith('/')) throw bad(spec, `the ${which} path '${raw}' is not absolute: write it starting with '/'`);
  if (/[\x00-\x1f\x7f]/.test(raw)) throw bad(spec, `the ${which} path contains a control character`);
  if (raw.split('/').includes('..')) throw bad(spec, `the ${which} path '${raw}' contains '..': write the real path`);
  const n = posix.normalize(raw);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
}

function parsePerNodeCache(spec: string, text: string): PerNodeCache {
  let sizeBytes: number | undefined;
  let blockSizeBytes: number | undefined;
  let method = 'loop' as const;
  let fs: PerNodeCacheFsType = 'xfs';
  for (const part of text.split(',')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    switch (key) {
      case 'size':
        sizeBytes = parseByteSize(value);
        if (sizeBytes === undefined) throw bad(spec, `perNodeCache size '${value}' is not a size like 10G`);
        break;
      case 'bs':
        blockSizeBytes = parseByteSize(value);
        if (blockSizeBytes === undefined) throw bad(spec, `perNodeCache bs '${value}' is not a size like 4k`);
        break;
      case 'method':
        if (value !== 'loop') throw bad(spec, `perNodeCache method '${value}' is not supported (only loop)`);
        method = value;
        break;
      case 'fs':
      case 'fstype':
        if (!isPerNodeCacheFsType(value)) {
          throw bad(spec, `perNodeCache fs '${value}' is not supported (${PER_NODE_CACHE_FS_TYPES.join(' or ')})`);
        }
        fs = value;
        break;
      default:
        throw bad(spec, `perNodeCache option '${key}' is unknown (size, bs, method, fs)`);
    }
  }
  if (sizeBytes === undefined) throw bad(spec, 'perNodeCache needs a size: perNodeCache=size=10G');
  return { sizeBytes, blockSizeBytes, method, fs };
}

/** Parses one `from:to[:flags]` map and applies the rules of its origin. */
export function parseVolume(text: string, origin: VolumeOrigin): VolumeSpec {
  const spec = text.trim();
  const fields = spec.split(':');
  const rawFrom = fields[0] ?? '';
  let rawTo = fields[1];
  if (rawTo === undefined || rawTo === '') {
    if (origin === 'user') throw bad(spec, 'write it as /host/dir:/container/dir[:ro]');
    rawTo = rawFrom; // a lone site path is mounted at the same place
  }
  const source = normalizePath(spec, 'source', rawFrom);
  const target = normalizePath(spec, 'target', rawTo);
  const seen = new Set<string>();
  const result: VolumeSpec = {
    source,
    target,
    readOnly: false,
    recursive: false,
    propagation: undefined,
    perNodeCache: undefined,
    origin,
  };
  for (const flagText of fields.slice(2)) {
    const eq = flagText.indexOf('=');
    const name = eq < 0 ? flagText : flagText.slice(0, eq);
    if (name === '') throw bad(spec, 'has an empty flag (two ":" in a row?)');
    if (seen.has(name)) throw bad(spec, `the flag '${name}' is repeated`);
    seen.add(name);
    if (origin === 'user' && !USER_FLAGS.has(name)) {
      throw bad(spec, `the flag '${name}' is not allowed in user volumes (allowed: ro, perNodeCache=size=..)`);
    }
    switch (name) {
      case 'ro':
        result.readOnly = true;
        break;
      case 'rec':
        result.recursive = true;
        break;
      case 'slave':
      case 'private':
        result.propagation = name;
        break;
      case 'perNodeCache':
        if (eq < 0) throw bad(spec, 'perNodeCache needs options: perNodeCache=size=10G');
        result.perNodeCache = parsePerNodeCache(spec, flagText.slice(eq + 1));
        break;
      default:
        throw bad(spec, `the flag '${name}' is unknown (ro, rec, slave, private, perNodeCache=...)`);
    }
    if (name !== 'perNodeCache' && eq >= 0) throw bad(spec, `the flag '${name}' takes no value`);
  }
  if (seen.has('slave') && seen.has('private')) throw bad(spec, "'slave' and 'private' cannot both be set");

  if (origin === 'user') {
    if (target === '/') throw bad(spec, 'cannot mount over the container root /');
    if (target === '/opt') throw bad(spec, 'cannot mount over /opt (it holds /opt/udiImage)');
    const forbidden = USER_FORBIDDEN_TREES.find((t) => isUnder(target, t));
    if (forbidden !== undefined && !USER_ALLOWED_TREES.some((t) => isUnder(target, t))) {
      throw bad(
        spec,
        `the target ${target} would hide ${forbidden}, which the site controls: choose another path (e.g. /data)`,
      );
    }
  } else if (SITE_FORBIDDEN_TARGETS.has(target)) {
    throw bad(spec, `siteFs may not mount over ${target}`);
  }
  return result;
}

/** Splits a volume text on `;` (ignoring empty pieces) and parses every map. */
export function parseVolumeList(text: string, origin: VolumeOrigin): VolumeSpec[] {
  let body = text.trim();
  if (body.length >= 2 && body.startsWith('"') && body.endsWith('"')) body = body.slice(1, -1);
  const specs = body
    .split(';')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map((s) => parseVolume(s, origin));
  const targets = new Set<string>();
  for (const v of specs) {
    if (targets.has(v.target))
      throw bad(`${v.source}:${v.target}`, `${v.target} is the target of more than one volume`);
    targets.add(v.target);
  }
  return specs;
}

/** Parses several volume texts (each `;`-separated) as one list. */
export function parseVolumeTexts(texts: readonly string[], origin: VolumeOrigin): VolumeSpec[] {
  return parseVolumeList(texts.join(';'), origin);
}

/** The normalized form, flags in a fixed order: equal maps give equal strings. */
export function normalizedVolume(v: VolumeSpec): string {
  const parts = [v.source, v.target];
  if (v.readOnly) parts.push('ro');
  if (v.recursive) parts.push('rec');
  if (v.propagation !== undefined) parts.push(v.propagation);
  if (v.perNodeCache !== undefined) {
    const c = v.perNodeCache;
    parts.push(
      `perNodeCache=size=${c.sizeBytes}${c.blockSizeBytes !== undefined ? `,bs=${c.blockSizeBytes}` : ''},method=${c.method},fs=${c.fs}`,
    );
  }
  return parts.join(':');
}

/** Order-independent signature of a volume list, for environment cache keys. */
export function volumeSignature(volumes: readonly VolumeSpec[]): string {
  return volumes.map(normalizedVolume).sort().join(';');
}
