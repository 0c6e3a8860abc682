/**
 * `imagemanager.json`: upstream Shifter's gateway config, every key of upstream's example/schema
 * accepted, validated into a typed `GatewayConfig`. Errors name the key, what is wrong and the fix;
 * unknown keys produce warnings (returned, the caller logs them).
 *
 * Differences from upstream (copy into the admin docs):
 * - `PullUpdateTimeout` (seconds, default 300) is really used: READY images younger than it are not
 *   re-pulled, FAILURE records younger than it are shown instead of re-pulled. (Upstream only read
 *   it when a key named `PullUpdateTime` existed, so it was always 300.)
 * - `ConverterOptions` is validated under its real name (upstream checked `ConvertOptions`).
 *   `ConverterOptions.squashfs` (string or list) is passed to the squashfs converter.
 * - `MongoDBURI`/`MongoDB` are optional: without `MongoDBURI` metadata lives in a local SQLite file
 *   (`MetadataStore`, default `<CacheDirectory>/gateway.sqlite`; NOTE: that file is no longer a
 *   disposable cache). With `MongoDBURI` the official driver is used; `MongoDB` defaults to `Shifter`.
 * - `Locations.<host>.url` may be `http://` (explicit opt-in for an insecure registry) or `https://`;
 *   a relative `sslcacert` is resolved against the config file's directory (upstream: the cwd).
 * - `DefaultImageFormat` must be `squashfs` (`cramfs`, `ext4`, `mock` are refused with a message).
 * - `Platforms.<sys>.accesstype: "remote"`: images go over ssh/scp (the system `ssh`/`scp`, as
 *   upstream) to `ssh.imageDir` on `host[0]` as `ssh.username`, with `ssh.key` and the extra
 *   `ssh.sshCmdOptions`/`ssh.scpCmdOptions` (string or list); see gateway/transfer/remote.ts.
 * - `Platforms.<sys>.use_external` / `policy_file` are accepted and ignored with a warning: the native
 *   registry client handles schema 2, OCI and manifest lists itself.
 * - Unused upstream keys (`DefaultLustreReplication`, `DefaultOstCount`, `DefaultImageRemote`,
 *   `PullUpdateTime`, `Locations.*.authentication`, `Platforms.*.usergroupService`, `mountCommand`)
 *   are accepted silently.
 * New optional keys:
 * - `MetadataStore`: SQLite file path (see above).
 * - `LayerConcurrency`: parallel layer downloads per pull (default 3).
 * - `Platforms.<sys>.platform`: `os/arch[/variant]` chosen from manifest lists (default `linux/amd64`).
 * - `HeartbeatTimeout`: seconds after which a non-READY record without progress is re-pullable
 *   (default 3600, upstream's fixed value).
 * - HTTP server limits (`RequestTimeout`, `HeadersTimeout`, ...): the block "HTTP server limits" below.
 * - `Limits`: what one image may cost the gateway (entries, expanded and compressed bytes); see
 *   the Limits block below.
 * - `MetricsAllow`: who may scrape the Prometheus endpoint `GET /metrics`: `"all"`, or a list of
 *   addresses and CIDR blocks (default: loopback only, `["127.0.0.0/8", "::1"]`).
 * - `ChunkConcurrency`, `ChunkQueueLength`, `ChunkQueueWait`: admission control of the chunk
 *   routes; the block "Chunk admission" below.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, resolve } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import { DEFAULT_MUNGE_SOCKET } from '../../common/munge.js';
import { DOCKER_HUB_LOCATION, isDockerHub } from '../reference/image-ref.js';
import { defaultBaseUrl } from '../registry/endpoint.js';
import type { AdmissionLimits } from '../chunks/admission.js';
import {
  CHUNK_ADMISSION_KEY_DOCS,
  HTTP_SERVER_KEY_DOCS,
  type LIMIT_KEY_DOCS,
  LOCATION_KEY_DOCS,
  PLATFORM_KEY_DOCS,
  PULL_POLICY_KEY_DOCS,
  TOP_KEY_DOCS,
  UNUSED_TOP_KEY_DOCS,
  keySet,
} from './imagemanager-keys.js';

export type AuthenticationMode = 'munge' | 'mock';
export type RegistryAuthMethod = 'token' | 'basic';

export interface LocationConfig {
  name: string;
  remotetype: 'dockerv2';
  /** Base URL, no trailing slash: `https://<name>` (Docker Hub: registry-1.docker.io) unless `url` says otherwise. */
  baseUrl: string;
  caFile?: string;
  authMethod: RegistryAuthMethod;
}

interface PlatformBase {
  name: string;
  mungeSocketPath: string;
  admins: string[];
  /** Where images go: a local directory, or the directory on the remote host. */
  imageDir: string;
  /** `os/arch[/variant]`, picked from manifest lists. */
  platform: string;
}

export interface LocalPlatformConfig extends PlatformBase {
  accesstype: 'local';
}

/** `accesstype: "remote"`: images are copied over ssh/scp to `imageDir` on `host`. */
export interface RemotePlatformConfig extends PlatformBase {
  accesstype: 'remote';
  remote: RemoteHost;
}

export interface RemoteHost {
  /** `host[0]` (upstream used only the first). */
  host: string;
  /** `ssh.username`; null: ssh's default (the gateway's user). */
  user: string | null;
  /** `ssh.key`: the private key file; null: ssh's defaults. */
  key: string | null;
  sshOptions: string[];
  scpOptions: string[];
}

export type PlatformConfig = LocalPlatformConfig | RemotePlatformConfig;

export interface GatewayConfig {
  /** The file this came from ('' when built from an object). */
  source: string;
  workerThreads: number;
  logLevel: string;
  defaultImageLocation: string;
  defaultImageFormat: 'squashfs';
  pullUpdateTimeoutSec: number;
  heartbeatTimeoutSec: number;
  /** Seconds, or null when images never expire. */
  imageExpirationTimeoutSec: number | null;
  mongo: { uri: string; db: string } | null;
  metadataStore: string;
  cacheDirectory: string;
  expandDirectory: string;
  metrics: boolean;
  authentication: AuthenticationMode;
  importUsers: ImportUsers;
  converterOptions: Record<string, string[]>;
  examiner: string | null;
  layerConcurrency: number;
  locations: Record<string, LocationConfig>;
  platforms: Record<string, PlatformConfig>;
  http: HttpServerLimits;
  /** Which registries pulls may reach, and how long and how many pulls may wait on one (see below). */
  pullPolicy: PullPolicyConfig;
  limits: ImageLimits;
  /** Who may scrape GET /metrics. */
  metricsAllow: MetricsAllow;
  /** Admission control of the chunk routes' index and chunk answers. */
  chunkAdmission: AdmissionLimits;
}

/** `all`, or address blocks (a single address is a block of its full length). */
export type MetricsAllow = 'all' | readonly AddressBlock[];

export interface AddressBlock {
  address: string;
  prefix: number;
  family: 'ipv4' | 'ipv6';
}

export const DEFAULT_METRICS_ALLOW: readonly AddressBlock[] = [
  { address: '127.0.0.0', prefix: 8, family: 'ipv4' },
  { address: '::1', prefix: 128, family: 'ipv6' },
];

export function parseAddressBlock(text: string): AddressBlock | null {
  const [address, prefixText, ...rest] = text.trim().split('/');
  const version = isIP(address);
  if (rest.length > 0 || version === 0) return null;
  const max = version === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : /^\d{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return null;
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

function parseMetricsAllow(raw: Json): MetricsAllow {
  const v = raw.MetricsAllow;
  if (v === undefined || v === null) return DEFAULT_METRICS_ALLOW;
  if (v === 'all') return 'all';
  const fix = 'write "all" or a list of addresses and CIDR blocks, e.g. "MetricsAllow": ["127.0.0.1", "10.0.0.0/8"]';
  return stringList(v, 'MetricsAllow', fix).map((text) => {
    const block = parseAddressBlock(text);
    if (!block) throw bad('MetricsAllow', `has "${text}", which is not an IP address or CIDR block`, fix);
    return block;
  });
}

/**
 * `ImportUsers`: who may import image files (doimport) besides the admins. Upstream took "all",
 * "none"/"None" or user names; names and uids (numbers) may be mixed here (upstream #311).
 */
export type ImportUsers = 'all' | 'none' | { names: string[]; uids: number[] };

export interface LoadedConfig {
  config: GatewayConfig;
  warnings: string[];
}

export const DEFAULT_CONFIG_PATH = '/etc/shifter/imagemanager.json';

const TOP_KEYS = keySet(TOP_KEY_DOCS);
const UNUSED_TOP_KEYS = keySet(UNUSED_TOP_KEY_DOCS);
const LOCATION_KEYS = keySet(LOCATION_KEY_DOCS);
const PLATFORM_KEYS = keySet(PLATFORM_KEY_DOCS);
const LOG_LEVELS = ['debug', 'info', 'warn', 'warning', 'error', 'critical'];

type Json = Record<string, unknown>;

function bad(key: string, problem: string, fix: string): ShifterError {
  return new ShifterError('BAD_CONFIG', `imagemanager.json: ${key} ${problem}; ${fix}`);
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function str(obj: Json, key: string, path: string, fallback?: string, example = '<value>'): string {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw bad(path, 'is missing', `add "${key}": "${example}"`);
  }
  if (typeof v !== 'string' || v === '')
    throw bad(path, `must be a non-empty string (got ${JSON.stringify(v)})`, `set it to a string`);
  return v;
}

function positiveInt(obj: Json, key: string, path: string, fallback: number, min = 1): number {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min) {
    throw bad(path, `must be an integer >= ${min} (got ${JSON.stringify(v)})`, `e.g. "${key}": ${fallback}`);
  }
  return n;
}

function bool(obj: Json, key: string, path: string, fallback: boolean): boolean {
  const v = obj[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === 'True') return true;
  if (v === 'false' || v === 'False') return false;
  throw bad(path, `must be true or false (got ${JSON.stringify(v)})`, `write "${key}": true or false`);
}

/** Upstream's `"D:H:M:S"` (fewer fields allowed: `"H:M:S"`, `"S"`). */
export function parseExpirationTimeout(v: string): number | null {
  const parts = v.split(':');
  if (parts.length > 4 || parts.some((p) => !/^\d+$/.test(p))) return null;
  const mult = [86400, 3600, 60, 1].slice(4 - parts.length);
  return parts.reduce((acc, p, i) => acc + Number(p) * mult[i], 0);
}

function stringList(v: unknown, path: string, fix: string): string[] {
  if (typeof v === 'string') return v.split(/\s+/).filter(Boolean);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  throw bad(path, `must be a string or a list of strings (got ${JSON.stringify(v)})`, fix);
}

function absPath(p: string, base: string): string {
  return isAbsolute(p) ? p : resolve(base, p);
}

function parseLocation(name: string, raw: unknown, baseDir: string, warnings: string[]): LocationConfig {
  const path = `Locations.${name}`;
  if (!isObject(raw)) throw bad(path, 'must be an object', `write "${name}": {"url": "https://${name}"}`);
  for (const k of Object.keys(raw))
    if (!LOCATION_KEYS.has(k))
      warnings.push(`imagemanager.json: unknown key ${path}.${k} ignored (known: ${[...LOCATION_KEYS].join(', ')})`);
  const remotetype = str(raw, 'remotetype', `${path}.remotetype`, 'dockerv2');
  if (remotetype !== 'dockerv2') {
    throw bad(
      `${path}.remotetype`,
      `is "${remotetype}", which is not supported`,
      'use "dockerv2" (Docker Registry HTTP API v2 / OCI distribution)',
    );
  }
  let baseUrl = defaultBaseUrl(name, isDockerHub(name));
  if (raw.url !== undefined && raw.url !== null) {
    const url = str(raw, 'url', `${path}.url`);
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw bad(
        `${path}.url`,
        `is not a URL (got "${url}")`,
        `write e.g. "https://${name}" or "http://127.0.0.1:5000"`,
      );
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
      throw bad(`${path}.url`, `has scheme "${parsed.protocol}"`, 'use http:// or https://');
    }
    baseUrl = url.replace(/\/+$/, '');
  }
  const authMethod = str(raw, 'authMethod', `${path}.authMethod`, 'token');
  if (authMethod !== 'token' && authMethod !== 'basic') {
    throw bad(`${path}.authMethod`, `is "${authMethod}"`, 'use "token" (bearer tokens, the default) or "basic"');
  }
  const loc: LocationConfig = { name, remotetype: 'dockerv2', baseUrl, authMethod };
  if (raw.sslcacert !== undefined && raw.sslcacert !== null)
    loc.caFile = absPath(str(raw, 'sslcacert', `${path}.sslcacert`), baseDir);
  return loc;
}

function parsePlatform(name: string, raw: unknown, warnings: string[]): PlatformConfig {
  const path = `Platforms.${name}`;
  if (!isObject(raw))
    throw bad(
      path,
      'must be an object',
      `write "${name}": {"accesstype": "local", "local": {"imageDir": "/images"}, "mungeSocketPath": "/run/munge/munge.socket.2", "admins": ["root"]}`,
    );
  for (const k of Object.keys(raw))
    if (!PLATFORM_KEYS.has(k))
      warnings.push(`imagemanager.json: unknown key ${path}.${k} ignored (known: ${[...PLATFORM_KEYS].join(', ')})`);
  const accesstype = str(raw, 'accesstype', `${path}.accesstype`, 'local');
  if (accesstype !== 'local' && accesstype !== 'remote')
    throw bad(`${path}.accesstype`, `is "${accesstype}"`, 'use "local" or "remote" (ssh/scp)');
  const remote = accesstype === 'remote' ? parseRemoteHost(path, raw) : null;
  const local = raw.local;
  if (remote === null && !isObject(local))
    throw bad(`${path}.local`, 'is missing or not an object', `add "local": {"imageDir": "/path/to/images"}`);
  const imageDir =
    remote?.imageDir ?? str(local as Json, 'imageDir', `${path}.local.imageDir`, undefined, '/var/lib/shifter/images');
  const imageDirKey = remote ? `${path}.ssh.imageDir` : `${path}.local.imageDir`;
  if (!isAbsolute(imageDir))
    throw bad(
      imageDirKey,
      `must be an absolute path (got "${imageDir}")`,
      'write the full path, e.g. "/var/lib/shifter/images"',
    );
  let admins: string[] = [];
  if (raw.admins !== undefined && raw.admins !== null) {
    if (!Array.isArray(raw.admins) || !raw.admins.every((a) => typeof a === 'string')) {
      throw bad(`${path}.admins`, 'must be a list of user names', 'write e.g. "admins": ["root"]');
    }
    admins = raw.admins;
  }
  if (raw.use_external === true)
    warnings.push(
      `imagemanager.json: ${path}.use_external is ignored: the native registry client handles schema 2, OCI and manifest lists`,
    );
  if (raw.policy_file !== undefined)
    warnings.push(`imagemanager.json: ${path}.policy_file is ignored (it was for skopeo in use_external mode)`);
  const platform = str(raw, 'platform', `${path}.platform`, 'linux/amd64');
  if (!/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/.test(platform)) {
    throw bad(
      `${path}.platform`,
      `is "${platform}"`,
      'write os/arch[/variant], e.g. "linux/amd64" or "linux/arm64/v8"',
    );
  }
  const base = {
    name,
    mungeSocketPath: str(raw, 'mungeSocketPath', `${path}.mungeSocketPath`, DEFAULT_MUNGE_SOCKET),
    admins,
    imageDir,
    platform,
  };
  return remote ? { ...base, accesstype: 'remote', remote: remote.host } : { ...base, accesstype: 'local' };
}

/** A remote path goes into a remote shell command: only characters that need no quoting there. */
const SAFE_REMOTE_PATH = /^\/[A-Za-z0-9._/+-]*$/;

function parseRemoteHost(path: string, raw: Json): { host: RemoteHost; imageDir: string } {
  const example =
    '"host": ["images.example.org"], "ssh": {"username": "shifter", "key": "/etc/shifter/ssh_key", ' +
    '"imageDir": "/images"}';
  const hosts =
    raw.host === undefined || raw.host === null ? [] : stringList(raw.host, `${path}.host`, `write ${example}`);
  if (hosts.length === 0) throw bad(`${path}.host`, 'is missing (accesstype is "remote")', `write ${example}`);
  if (!isObject(raw.ssh)) throw bad(`${path}.ssh`, 'is missing or not an object', `write ${example}`);
  const ssh = raw.ssh;
  const imageDir = str(ssh, 'imageDir', `${path}.ssh.imageDir`, undefined, '/images');
  if (!SAFE_REMOTE_PATH.test(imageDir)) {
    throw bad(
      `${path}.ssh.imageDir`,
      `is "${imageDir}"`,
      'write an absolute path of letters, digits and . _ / + - (it is used in remote shell commands)',
    );
  }
  const options = (key: string) =>
    ssh[key] === undefined || ssh[key] === null
      ? []
      : stringList(ssh[key], `${path}.ssh.${key}`, `write e.g. "${key}": ["-o", "ConnectTimeout=10"]`);
  const host: RemoteHost = {
    host: hosts[0],
    user: ssh.username === undefined || ssh.username === null ? null : str(ssh, 'username', `${path}.ssh.username`),
    key: ssh.key === undefined || ssh.key === null ? null : str(ssh, 'key', `${path}.ssh.key`),
    sshOptions: options('sshCmdOptions'),
    scpOptions: options('scpCmdOptions'),
  };
  if (!/^[A-Za-z0-9][A-Za-z0-9.:_-]*$/.test(host.host))
    throw bad(`${path}.host`, `has "${host.host}", which is not a host name or address`, `write ${example}`);
  if (host.user !== null && !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(host.user))
    throw bad(`${path}.ssh.username`, `is "${host.user}", which is not a user name`, `write ${example}`);
  if (host.key !== null && !isAbsolute(host.key))
    throw bad(
      `${path}.ssh.key`,
      `must be an absolute path (got "${host.key}")`,
      'write the full path of the private key',
    );
  return { host, imageDir };
}

// ---------------------------------------------------------------------------------------------
// HTTP server limits (new, optional keys). Slow or silent clients must not hold connections (and
// so file descriptors) for long, and one client address must not use them all: upstream had no
// such limits and a client that sent headers and no body kept its connection for good.
// ---------------------------------------------------------------------------------------------

export interface HttpServerLimits {
  /** A client must send a whole request, headers and body, within this. */
  requestTimeoutMs: number;
  /** ... and its headers within this (also closes connections that send nothing). */
  headersTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Open connections from one client address; more are answered 503 and closed. */
  maxConnectionsPerAddress: number;
  /** Open connections in all; more are answered 503 and closed. */
  maxConnections: number;
}

const HTTP_SERVER_KEYS = keySet(HTTP_SERVER_KEY_DOCS);

export const DEFAULT_HTTP_SERVER_LIMITS: HttpServerLimits = {
  requestTimeoutMs: 30_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnectionsPerAddress: 64,
  maxConnections: 2048,
};

function parseHttpServerLimits(raw: Json): HttpServerLimits {
  const d = DEFAULT_HTTP_SERVER_LIMITS;
  const seconds = (key: string, fallbackMs: number) => positiveInt(raw, key, key, fallbackMs / 1000) * 1000;
  const count = (key: string, fallback: number) => positiveInt(raw, key, key, fallback);
  const limits: HttpServerLimits = {
    requestTimeoutMs: seconds('RequestTimeout', d.requestTimeoutMs),
    headersTimeoutMs: seconds('HeadersTimeout', d.headersTimeoutMs),
    keepAliveTimeoutMs: seconds('KeepAliveTimeout', d.keepAliveTimeoutMs),
    maxConnectionsPerAddress: count('MaxConnectionsPerAddress', d.maxConnectionsPerAddress),
    maxConnections: count('MaxConnections', d.maxConnections),
  };
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    const [headers, request] = [limits.headersTimeoutMs / 1000, limits.requestTimeoutMs / 1000];
    throw bad(
      'HeadersTimeout',
      `(${headers} s) is longer than RequestTimeout (${request} s)`,
      'make HeadersTimeout at most RequestTimeout: the headers are part of the request',
    );
  }
  if (limits.maxConnectionsPerAddress > limits.maxConnections) {
    const [perAddress, all] = [limits.maxConnectionsPerAddress, limits.maxConnections];
    throw bad(
      'MaxConnectionsPerAddress',
      `(${perAddress}) is larger than MaxConnections (${all})`,
      'make it at most MaxConnections',
    );
  }
  return limits;
}

// ---- Chunk admission (issue 12): how many index/chunk answers at once, how many may wait, how long ----
//
// `ChunkConcurrency` (default 64): index and chunk answers in flight; more wait in a queue served
// round-robin between nodes. `ChunkQueueLength` (default 1024): requests waiting, over all nodes.
// `ChunkQueueWait` (seconds, default 10): how long one may wait. Past either bound: 503 with
// Retry-After, and the node retries with jitter or asks its next source.

const CHUNK_KEYS = keySet(CHUNK_ADMISSION_KEY_DOCS);

export const DEFAULT_CHUNK_ADMISSION: AdmissionLimits = { concurrency: 64, queueLength: 1024, maxWaitMs: 10_000 };

function parseChunkAdmission(raw: Json): AdmissionLimits {
  const d = DEFAULT_CHUNK_ADMISSION;
  return {
    concurrency: positiveInt(raw, 'ChunkConcurrency', 'ChunkConcurrency', d.concurrency),
    queueLength: positiveInt(raw, 'ChunkQueueLength', 'ChunkQueueLength', d.queueLength, 0),
    maxWaitMs: positiveInt(raw, 'ChunkQueueWait', 'ChunkQueueWait', d.maxWaitMs / 1000) * 1000,
  };
}

/** Validates an already-parsed JSON object. `source` is the file path (for relative paths). */
export function parseGatewayConfig(raw: unknown, source = ''): LoadedConfig {
  const warnings: string[] = [];
  if (!isObject(raw)) throw bad('(top level)', 'must be a JSON object', 'see imagemanager.json.example');
  const baseDir = source ? dirname(resolve(source)) : process.cwd();
  for (const k of Object.keys(raw)) {
    const known =
      TOP_KEYS.has(k) ||
      UNUSED_TOP_KEYS.has(k) ||
      HTTP_SERVER_KEYS.has(k) ||
      PULL_POLICY_KEYS.has(k) ||
      CHUNK_KEYS.has(k);
    if (!known) warnings.push(`imagemanager.json: unknown key ${k} ignored`);
  }

  const logLevel = str(raw, 'LogLevel', 'LogLevel', 'info');
  if (!LOG_LEVELS.includes(logLevel.toLowerCase()))
    throw bad('LogLevel', `is "${logLevel}"`, `use one of ${LOG_LEVELS.join(', ')}`);

  const format = str(raw, 'DefaultImageFormat', 'DefaultImageFormat', 'squashfs');
  if (format !== 'squashfs') {
    throw bad('DefaultImageFormat', `is "${format}", which this gateway does not produce`, 'use "squashfs"');
  }

  let imageExpirationTimeoutSec: number | null = null;
  if (raw.ImageExpirationTimeout !== undefined && raw.ImageExpirationTimeout !== null) {
    const v = str(raw, 'ImageExpirationTimeout', 'ImageExpirationTimeout');
    imageExpirationTimeoutSec = parseExpirationTimeout(v);
    if (imageExpirationTimeoutSec === null)
      throw bad('ImageExpirationTimeout', `is "${v}"`, 'write "days:hours:minutes:seconds", e.g. "90:00:00:00"');
  }

  const cacheDirectory = absPath(
    str(raw, 'CacheDirectory', 'CacheDirectory', undefined, '/var/cache/shifter/layers'),
    baseDir,
  );
  const expandDirectory = absPath(
    str(raw, 'ExpandDirectory', 'ExpandDirectory', undefined, '/var/tmp/shifter/expand'),
    baseDir,
  );

  let mongo: GatewayConfig['mongo'] = null;
  if (raw.MongoDBURI !== undefined && raw.MongoDBURI !== null && raw.MongoDBURI !== '') {
    const uri = str(raw, 'MongoDBURI', 'MongoDBURI');
    if (!/^mongodb(\+srv)?:\/\//.test(uri))
      throw bad(
        'MongoDBURI',
        `is "${uri}"`,
        'write mongodb://host:27017/ or remove it to use the built-in SQLite store',
      );
    mongo = { uri, db: str(raw, 'MongoDB', 'MongoDB', 'Shifter') };
  }

  const auth = str(raw, 'Authentication', 'Authentication', 'munge');
  if (auth !== 'munge' && auth !== 'mock')
    throw bad('Authentication', `is "${auth}"`, 'use "munge" ("mock" is for tests only)');

  const importUsers = parseImportUsers(raw.ImportUsers);

  const converterOptions: Record<string, string[]> = {};
  if (raw.ConverterOptions !== undefined && raw.ConverterOptions !== null) {
    if (!isObject(raw.ConverterOptions))
      throw bad(
        'ConverterOptions',
        'must be an object',
        'write e.g. "ConverterOptions": {"squashfs": ["--compressor", "zstd"]}',
      );
    for (const [fmt, v] of Object.entries(raw.ConverterOptions)) {
      converterOptions[fmt] = stringList(v, `ConverterOptions.${fmt}`, `write e.g. "${fmt}": ["--compressor", "zstd"]`);
    }
  }

  let examiner: string | null = null;
  if (raw.examiner !== undefined && raw.examiner !== null && raw.examiner !== '') {
    examiner = absPath(str(raw, 'examiner', 'examiner'), baseDir);
  }

  const locations: Record<string, LocationConfig> = {};
  if (raw.Locations !== undefined && raw.Locations !== null) {
    if (!isObject(raw.Locations))
      throw bad(
        'Locations',
        'must be an object keyed by registry host',
        'write e.g. "Locations": {"index.docker.io": {"remotetype": "dockerv2"}}',
      );
    for (const [name, v] of Object.entries(raw.Locations)) locations[name] = parseLocation(name, v, baseDir, warnings);
  }
  const defaultImageLocation = str(raw, 'DefaultImageLocation', 'DefaultImageLocation', DOCKER_HUB_LOCATION);

  if (!isObject(raw.Platforms) || Object.keys(raw.Platforms).length === 0) {
    throw bad(
      'Platforms',
      'is missing or empty',
      'add at least one system, e.g. "Platforms": {"mycluster": {"accesstype": "local", "local": {"imageDir": "/images"}, "mungeSocketPath": "/run/munge/munge.socket.2", "admins": ["root"]}}',
    );
  }
  const platforms: Record<string, PlatformConfig> = {};
  for (const [name, v] of Object.entries(raw.Platforms)) platforms[name] = parsePlatform(name, v, warnings);

  const metadataStore =
    raw.MetadataStore !== undefined && raw.MetadataStore !== null
      ? absPath(str(raw, 'MetadataStore', 'MetadataStore'), baseDir)
      : resolve(cacheDirectory, 'gateway.sqlite');

  const config: GatewayConfig = {
    source,
    workerThreads: positiveInt(raw, 'WorkerThreads', 'WorkerThreads', 1),
    logLevel: logLevel.toLowerCase(),
    defaultImageLocation,
    defaultImageFormat: 'squashfs',
    pullUpdateTimeoutSec: positiveInt(raw, 'PullUpdateTimeout', 'PullUpdateTimeout', 300, 0),
    heartbeatTimeoutSec: positiveInt(raw, 'HeartbeatTimeout', 'HeartbeatTimeout', 3600),
    imageExpirationTimeoutSec,
    mongo,
    metadataStore,
    cacheDirectory,
    expandDirectory,
    metrics: bool(raw, 'Metrics', 'Metrics', false),
    authentication: auth,
    importUsers,
    converterOptions,
    examiner,
    layerConcurrency: positiveInt(raw, 'LayerConcurrency', 'LayerConcurrency', 3),
    locations,
    platforms,
    http: parseHttpServerLimits(raw),
    pullPolicy: parsePullPolicy(raw, positiveInt(raw, 'WorkerThreads', 'WorkerThreads', 1)),
    limits: parseImageLimits(raw.Limits, warnings),
    metricsAllow: parseMetricsAllow(raw),
    chunkAdmission: parseChunkAdmission(raw),
  };
  return { config, warnings };
}

function parseImportUsers(iu: unknown): ImportUsers {
  if (iu === undefined || iu === null || iu === 'none' || iu === 'None') return 'none';
  if (iu === 'all') return 'all';
  const fix = 'use "all", "none" or a list of user names and uids, e.g. ["alice", 1001]';
  if (!Array.isArray(iu)) throw bad('ImportUsers', `is ${JSON.stringify(iu)}`, fix);
  const names: string[] = [];
  const uids: number[] = [];
  for (const u of iu) {
    if (typeof u === 'number' && Number.isSafeInteger(u) && u >= 0) uids.push(u);
    else if (typeof u === 'string' && /^\d+$/.test(u)) uids.push(Number(u));
    else if (typeof u === 'string' && u !== '') names.push(u);
    else throw bad('ImportUsers', `has the entry ${JSON.stringify(u)}`, fix);
  }
  return { names, uids };
}

// ---- Pull policy: registry allow-list, pull deadline, per-registry concurrency ----
//
// `AllowedRegistries`: host patterns a pull may name besides the `Locations` keys and
// DefaultImageLocation (which are always allowed): `registry.example.org` (default port only),
// `registry.example.org:5000`, `registry.example.org:*` (any port), `*.example.org` (any subdomain).
// Hosts allowed only by a pattern are checked once resolved: loopback, link-local and the gateway's
// own addresses are refused (a Location is needed for those), and their network failures read
// "could not reach" without details.
// `PullDeadline`: seconds a pull may run, from leaving the queue to READY (default 7200).
// `RegistryConcurrency`: pulls running against one registry at once (default WorkerThreads - 1,
// at least 1), so a stalled registry leaves a worker for the others.

/** `*.example.org:5000` as parsed: `suffix` true matches subdomains only; port null = default port, '*' = any. */
export interface RegistryPattern {
  host: string;
  suffix: boolean;
  port: string | null;
}

export interface PullPolicyConfig {
  allowedRegistries: RegistryPattern[];
  pullDeadlineSec: number;
  registryConcurrency: number;
}

const PULL_POLICY_KEYS = keySet(PULL_POLICY_KEY_DOCS);
const DNS_LABEL = '[a-z0-9](?:[a-z0-9-]*[a-z0-9])?';
const REGISTRY_PATTERN = new RegExp(`^(\\*\\.)?(${DNS_LABEL}(?:\\.${DNS_LABEL})*)(?::(\\d{1,5}|\\*))?$`);

export function parseRegistryPattern(text: string): RegistryPattern | null {
  const m = REGISTRY_PATTERN.exec(text.trim().toLowerCase());
  if (!m) return null;
  return { host: m[2], suffix: m[1] !== undefined, port: m[3] ?? null };
}

function parsePullPolicy(raw: Json, workerThreads: number): PullPolicyConfig {
  const allowedRegistries: RegistryPattern[] = [];
  if (raw.AllowedRegistries !== undefined && raw.AllowedRegistries !== null) {
    const fix = 'write e.g. "AllowedRegistries": ["registry.example.org", "*.example.org:5000"]';
    for (const text of stringList(raw.AllowedRegistries, 'AllowedRegistries', fix)) {
      const pattern = parseRegistryPattern(text);
      if (!pattern) {
        throw bad('AllowedRegistries', `has "${text}", which is not host[:port|:*] or *.domain[:port|:*]`, fix);
      }
      allowedRegistries.push(pattern);
    }
  }
  return {
    allowedRegistries,
    pullDeadlineSec: positiveInt(raw, 'PullDeadline', 'PullDeadline', 7200),
    registryConcurrency: positiveInt(raw, 'RegistryConcurrency', 'RegistryConcurrency', Math.max(1, workerThreads - 1)),
  };
}

// ---- Limits: what one image may cost the gateway (issue 7). Keep this block together. ----

/**
 * `Limits` (object, every key optional): what one pull may cost the gateway. A pull over a limit
 * fails with a message naming the key and the value to raise. Byte values are integers or strings
 * with a binary suffix (`"64G"`, `"512M"`).
 */
export interface ImageLimits {
  /** `Limits.MaxEntries`: tar entries over all layers (an "inode bomb" of empty files is cheap to send). */
  maxEntries: number;
  /** `Limits.MaxExpandedBytes`: decompressed tar bytes over all layers. */
  maxExpandedBytes: number;
  /** `Limits.MaxExpansionRatio`: decompressed / compressed size of one layer, once it is past 1 GiB. */
  maxExpansionRatio: number;
  /** `Limits.MaxLayerBytes`: compressed size of one layer, from the manifest. */
  maxLayerBytes: number;
  /** `Limits.MaxImageBytes`: compressed size of all layers, from the manifest. */
  maxImageBytes: number;
}

const GiB = 1024 ** 3;

export const DEFAULT_IMAGE_LIMITS: ImageLimits = {
  maxEntries: 2_000_000,
  maxExpandedBytes: 64 * GiB,
  maxExpansionRatio: 100,
  maxLayerBytes: 16 * GiB,
  maxImageBytes: 32 * GiB,
};

const LIMIT_KEYS: Record<string, keyof ImageLimits> = {
  MaxEntries: 'maxEntries',
  MaxExpandedBytes: 'maxExpandedBytes',
  MaxExpansionRatio: 'maxExpansionRatio',
  MaxLayerBytes: 'maxLayerBytes',
  MaxImageBytes: 'maxImageBytes',
} satisfies Record<keyof typeof LIMIT_KEY_DOCS, keyof ImageLimits>;
const BYTE_LIMITS = new Set(['MaxExpandedBytes', 'MaxLayerBytes', 'MaxImageBytes']);
const SUFFIX: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: GiB, T: 1024 ** 4 };

function limitValue(key: string, v: unknown): number {
  const m = typeof v === 'string' ? /^(\d+)\s*([KMGT]?)i?B?$/i.exec(v.trim()) : null;
  const n = typeof v === 'number' ? v : m && BYTE_LIMITS.has(key) ? Number(m[1]) * SUFFIX[m[2].toUpperCase()] : NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    const example = BYTE_LIMITS.has(key) ? '"64G" or 68719476736' : String(DEFAULT_IMAGE_LIMITS[LIMIT_KEYS[key]]);
    const got = JSON.stringify(v);
    throw bad(`Limits.${key}`, `must be a positive integer (got ${got})`, `write e.g. "${key}": ${example}`);
  }
  return n;
}

function parseImageLimits(raw: unknown, warnings: string[]): ImageLimits {
  const limits = { ...DEFAULT_IMAGE_LIMITS };
  if (raw === undefined || raw === null) return limits;
  if (!isObject(raw)) throw bad('Limits', 'must be an object', 'write e.g. "Limits": {"MaxEntries": 2000000}');
  const known = Object.keys(LIMIT_KEYS).join(', ');
  for (const [key, v] of Object.entries(raw)) {
    const field = LIMIT_KEYS[key];
    if (field) limits[field] = limitValue(key, v);
    else warnings.push(`imagemanager.json: unknown key Limits.${key} ignored (known: ${known})`);
  }
  return limits;
}

// ---- end of Limits ----

/** Picks the config file: `--config`, else `$GWCONFIG`, else /etc/shifter/imagemanager.json. */
export function configPathFrom(cliPath: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return cliPath || env.GWCONFIG || DEFAULT_CONFIG_PATH;
}

export function loadGatewayConfig(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code;
    throw new ShifterError(
      'BAD_CONFIG',
      `cannot read ${path}${errno ? ` (${errno})` : ''}; pass --config FILE or set GWCONFIG`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ShifterError('BAD_CONFIG', `${path} is not valid JSON: ${(e as Error).message}; fix the syntax`);
  }
  try {
    return parseGatewayConfig(raw, path);
  } catch (e) {
    if (e instanceof ShifterError)
      throw new ShifterError('BAD_CONFIG', e.message.replace(/^imagemanager\.json:/, `${path}:`));
    throw e;
  }
}
