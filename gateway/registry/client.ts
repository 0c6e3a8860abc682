/**
 * Docker Registry HTTP API v2 client: resolves a reference to the platform's image manifest and
 * config, and downloads verified layer blobs into a BlobCache.
 *
 * Authentication follows the registry's lead: a request goes out with whatever worked last for
 * its scope; a 401 carrying a Bearer challenge gets an anonymous token first and a credentialed
 * one only if that is refused or lacks the scope (so `usedCredentials` marks images that really
 * are private); `authMethod: 'basic'` sends Basic credentials from the first request.
 */
import { readFile } from 'node:fs/promises';
import type { Logger } from '../../common/logger.js';
import { ShifterError, describeError } from '../../common/errors.js';
import type { RegistryEndpoint, RegistryClientOptions } from './endpoint.js';
import {
  isDigest,
  parseImageConfig,
  parseManifest,
  sha256Digest,
  type ImageManifest,
  type LayerDescriptor,
  type ResolvedImage,
} from './manifest.js';
import type { BlobCache } from './blob-cache.js';
import { MANIFEST_ACCEPT } from './media-types.js';
import { DEFAULT_PLATFORM, formatPlatform, selectPlatform } from './platform.js';
import {
  REDIRECTS,
  TransientError,
  discard,
  readBody,
  send,
  sendFollowingRedirects,
  type HttpResponse,
  type HttpTimeouts,
} from './http.js';
import { blobReuse } from './blob-reuse.js';
import type { ConnectGuard } from './address-guard.js';
import {
  TokenCache,
  assertSafeForCredentials,
  basicAuthorization,
  parseChallenges,
  parseTokenResponse,
  pullScope,
  tokenUrl,
  type Challenge,
} from './auth.js';
import { withRetries, type RetryPolicy } from './retry.js';
import { downloadBlob } from './blob-download.js';

const MANIFEST_LIMIT = 4 * 1024 * 1024;
const CONFIG_LIMIT = 16 * 1024 * 1024;
const TOKEN_LIMIT = 1024 * 1024;
const TAG = /^[\w][\w.-]{0,127}$/;

type AuthStage = 'none' | 'anonymous' | 'credentialed' | 'basic';

interface AuthState {
  stage: AuthStage;
  header: string | null;
  tokenKey: string | null;
}

interface FetchedManifest {
  bytes: Buffer;
  contentType: string | undefined;
  digest: string;
  credentialed: boolean;
}

function parseBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ShifterError(
      'BAD_CONFIG',
      `registry URL "${raw}" is not a URL; write it like https://registry.example.org or http://127.0.0.1:5000`,
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ShifterError('BAD_CONFIG', `registry URL "${raw}" must start with https:// or http://`);
  }
  url.search = '';
  url.hash = '';
  return url;
}

export class RegistryClient {
  readonly endpoint: RegistryEndpoint;
  private readonly log: Logger;
  private readonly base: URL;
  /** Path prefix of the base URL without trailing slash ('' for most registries). */
  private readonly basePath: string;
  private readonly timeouts: HttpTimeouts;
  private readonly guard: ConnectGuard | undefined;
  private readonly attempts: number;
  private readonly backoffMs: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly tokens = new TokenCache();
  private readonly authStates = new Map<string, AuthState>();
  private ca: Promise<string | undefined> | undefined;

  constructor(endpoint: RegistryEndpoint, log: Logger, options: RegistryClientOptions = {}) {
    this.endpoint = endpoint;
    this.log = log;
    this.base = parseBaseUrl(endpoint.baseUrl);
    this.basePath = this.base.pathname.replace(/\/+$/, '');
    this.timeouts = {
      connectTimeoutMs: options.connectTimeoutMs ?? 15_000,
      responseTimeoutMs: options.responseTimeoutMs ?? 30_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 60_000,
    };
    this.guard = options.guard;
    this.attempts = Math.max(1, options.attempts ?? 5);
    this.backoffMs = options.backoffMs ?? 500;
    this.env = options.env ?? process.env;
  }

  /** host[:port] of the registry, for messages. */
  get registry(): string {
    return this.base.host;
  }

  async resolve(repository: string, reference: string, signal?: AbortSignal): Promise<ResolvedImage> {
    if (!isDigest(reference) && !TAG.test(reference)) {
      throw new ShifterError('BAD_ARGUMENT', `"${reference}" is neither a tag nor a sha256 digest`);
    }
    return this.reported(this.resolveImage(repository, reference, signal));
  }

  /**
   * For a user-named registry, how it failed to connect (refused, reset, TLS, silent) would map the
   * ports of hosts the user cannot reach themselves: the user learns only that it could not be reached.
   */
  private async reported<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (e) {
      if (!this.guard || !(e instanceof ShifterError) || e.code !== 'UNREACHABLE') throw e;
      this.log.warn({ registry: this.registry, err: e.message }, 'user-named registry unreachable');
      throw new ShifterError(
        'UNREACHABLE',
        `could not reach ${this.registry}; check the registry name in the image reference`,
      );
    }
  }

  private async resolveImage(repository: string, reference: string, signal?: AbortSignal): Promise<ResolvedImage> {
    const top = await this.fetchManifest(repository, reference, signal);
    let credentialed = top.credentialed;
    let manifestDigest = top.digest;
    let parsed = parseManifest(top.bytes, top.contentType);
    if (parsed.kind === 'index') {
      const wanted = this.endpoint.platform ?? DEFAULT_PLATFORM;
      const entry = selectPlatform(parsed.manifests, wanted);
      if (!entry) {
        const offered = parsed.manifests.map((m) => formatPlatform(m.platform)).join(', ') || 'none';
        throw new ShifterError(
          'NOT_FOUND',
          `image ${this.registry}/${repository}:${reference} has no ${formatPlatform(wanted)} variant (it offers: ${offered})`,
        );
      }
      const platformManifest = await this.fetchManifest(repository, entry.digest, signal);
      credentialed ||= platformManifest.credentialed;
      manifestDigest = platformManifest.digest;
      parsed = parseManifest(platformManifest.bytes, platformManifest.contentType);
      if (parsed.kind !== 'image') {
        throw new ShifterError(
          'REGISTRY_ERROR',
          `the ${formatPlatform(wanted)} entry of ${repository}:${reference} is another manifest list, not an image`,
        );
      }
    }
    const config = parseImageConfig(await this.fetchConfig(repository, parsed, signal));
    this.log.debug({ repository, reference, manifestDigest, layers: parsed.layers.length }, 'resolved image');
    return { manifestDigest, config, layers: parsed.layers, usedCredentials: credentialed };
  }

  /**
   * Returns the path of the verified blob in the cache, downloading it unless the cached copy may
   * be handed to this pull (blob-reuse.ts: never on the strength of its digest alone).
   * `onBytes` gets the bytes received; a negative count means a restart discarded earlier bytes.
   */
  async fetchBlob(
    repository: string,
    layer: LayerDescriptor,
    cache: BlobCache,
    onBytes?: (n: number) => void,
    signal?: AbortSignal,
  ): Promise<string> {
    const url = this.url(repository, 'blobs', layer.digest);
    const registry = this.registryId;
    return this.reported(
      cache.ensure(layer, {
        mayReuse: async (sources) => {
          const rule = blobReuse(sources, registry, repository);
          this.log.debug({ repository, digest: layer.digest, rule }, 'blob already cached');
          if (rule === 'reuse') return true;
          return rule === 'ask-registry' && (await this.blobServed(repository, layer.digest, signal));
        },
        fill: async (writer) => {
          let credentialed = false;
          await downloadBlob(
            writer,
            async (offset) => {
              const answer = await this.request(
                repository,
                url,
                offset > 0 ? { range: `bytes=${offset}-` } : {},
                signal,
              );
              credentialed ||= answer.credentialed;
              const { res } = answer;
              if (res.status !== 200 && res.status !== 206) {
                throw await this.unexpected(res, `blob ${layer.digest} of ${repository}`);
              }
              return res;
            },
            this.policy(signal),
            onBytes,
          );
          return { registry, repository, anonymous: !credentialed };
        },
      }),
    );
  }

  /**
   * Whether the registry would serve the blob to this pull: `HEAD /v2/<repo>/blobs/<digest>` with
   * its own authentication. A redirect counts as served (the registry sends only what it allows to
   * its storage; a pre-signed URL may be valid for GET alone). A refusal or 404 is a plain no; the
   * download that follows fails with the registry's own words.
   */
  private async blobServed(repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    const url = this.url(repository, 'blobs', digest);
    return withRetries(`checking blob ${digest} of ${repository}`, this.policy(signal), async () => {
      let res: HttpResponse;
      try {
        res = (await this.request(repository, url, { method: 'HEAD' }, signal)).res;
      } catch (e) {
        if (e instanceof ShifterError && e.code === 'AUTH_FAILED') return false;
        throw e;
      }
      discard(res);
      if (res.status === 200 || REDIRECTS.has(res.status)) return true;
      if (res.status === 404 || res.status === 401 || res.status === 403) return false;
      throw new ShifterError(
        'REGISTRY_ERROR',
        `${this.registry} answered HTTP ${res.status} to HEAD for blob ${digest} of ${repository}`,
      );
    });
  }

  /** The registry as blob sources name it: its base URL. */
  private get registryId(): string {
    return `${this.base.origin}${this.basePath}`;
  }

  private policy(signal: AbortSignal | undefined): RetryPolicy {
    return { attempts: this.attempts, backoffMs: this.backoffMs, log: this.log, ...(signal ? { signal } : {}) };
  }

  private url(repository: string, kind: 'manifests' | 'blobs', reference: string): URL {
    const u = new URL(this.base.href);
    u.pathname = `${this.basePath}/v2/${repository}/${kind}/${reference}`;
    return u;
  }

  private caBundle(): Promise<string | undefined> {
    const file = this.endpoint.caFile;
    this.ca ??=
      file === undefined
        ? Promise.resolve(undefined)
        : readFile(file, 'utf8').catch((e: unknown) => {
            throw new ShifterError(
              'BAD_CONFIG',
              `cannot read the CA file ${file} for ${this.registry}: ${describeError(e)}`,
            );
          });
    return this.ca;
  }

  private async fetchManifest(repository: string, reference: string, signal?: AbortSignal): Promise<FetchedManifest> {
    const url = this.url(repository, 'manifests', reference);
    return withRetries(`fetching manifest ${repository}:${reference}`, this.policy(signal), async () => {
      const { res, credentialed } = await this.request(repository, url, { accept: MANIFEST_ACCEPT }, signal);
      if (res.status !== 200) throw await this.unexpected(res, `image ${this.registry}/${repository}:${reference}`);
      const bytes = await this.bounded(res, MANIFEST_LIMIT, 'manifest');
      const digest = sha256Digest(bytes);
      const expected = isDigest(reference) ? reference : headerDigest(res.headers['docker-content-digest']);
      if (expected !== null && expected !== digest) {
        throw new ShifterError(
          'DIGEST_MISMATCH',
          `the manifest of ${this.registry}/${repository}:${reference} should have digest ${expected} but hashes to ${digest}; ` +
            'something between the registry and us altered it, pull again',
        );
      }
      const contentType = res.headers['content-type'];
      return { bytes, contentType, digest, credentialed };
    });
  }

  private async fetchConfig(repository: string, manifest: ImageManifest, signal?: AbortSignal): Promise<Buffer> {
    const desc = manifest.config;
    if (desc.size > CONFIG_LIMIT)
      throw new ShifterError(
        'REGISTRY_ERROR',
        `the image config ${desc.digest} is ${desc.size} bytes, more than the ${CONFIG_LIMIT} allowed`,
      );
    const url = this.url(repository, 'blobs', desc.digest);
    return withRetries(`fetching image config ${desc.digest}`, this.policy(signal), async () => {
      const { res } = await this.request(repository, url, {}, signal);
      if (res.status !== 200) throw await this.unexpected(res, `image config ${desc.digest} of ${repository}`);
      const bytes = await this.bounded(res, desc.size, 'image config');
      const digest = sha256Digest(bytes);
      if (bytes.length !== desc.size || digest !== desc.digest) {
        throw new ShifterError(
          'DIGEST_MISMATCH',
          `blob ${desc.digest} (the image config) failed verification: got ${bytes.length} bytes hashing to ${digest}`,
        );
      }
      return bytes;
    });
  }

  private async bounded(res: HttpResponse, limit: number, what: string): Promise<Buffer> {
    try {
      return await readBody(res, limit);
    } catch (e) {
      if (e instanceof RangeError) throw new ShifterError('REGISTRY_ERROR', `the ${what} is too large: ${e.message}`);
      throw e;
    }
  }

  /** A ShifterError for a status we cannot use (the body is read for the registry's own message). */
  private async unexpected(res: HttpResponse, what: string): Promise<Error> {
    let detail = '';
    try {
      const body = JSON.parse((await readBody(res, 64 * 1024)).toString('utf8')) as {
        errors?: { code?: string; message?: string }[];
      };
      detail = (body.errors ?? []).map((x) => [x.code, x.message].filter(Boolean).join(': ')).join('; ');
    } catch {
      discard(res);
    }
    const suffix = detail ? ` (${detail})` : '';
    if (res.status === 404)
      return new ShifterError('NOT_FOUND', `${what} not found on ${this.registry}${suffix}; check the name and tag`);
    if (res.status === 401 || res.status === 403) {
      return new ShifterError('AUTH_FAILED', `${res.url.host} refused ${what} with HTTP ${res.status}${suffix}`);
    }
    if (res.status >= 500 || res.status === 429)
      return new TransientError(`${res.url.href} answered HTTP ${res.status}${suffix}`, res.url.href, res.status);
    return new ShifterError('REGISTRY_ERROR', `${this.registry} answered HTTP ${res.status} for ${what}${suffix}`);
  }

  private initialAuth(): AuthState {
    const creds = this.endpoint.credentials;
    if (this.endpoint.authMethod === 'basic' && creds) {
      assertSafeForCredentials(this.base, this.registry);
      return { stage: 'basic', header: basicAuthorization(creds), tokenKey: null };
    }
    return { stage: 'none', header: null, tokenKey: null };
  }

  /**
   * One registry request with authentication; a GET follows redirects, a HEAD does not (its
   * answer is the registry's own). 5xx becomes a TransientError.
   */
  private async request(
    repository: string,
    url: URL,
    extra: { accept?: string; range?: string; method?: 'HEAD' },
    signal?: AbortSignal,
  ): Promise<{ res: HttpResponse; credentialed: boolean }> {
    const scope = pullScope(repository);
    const ca = await this.caBundle();
    for (let round = 0; round < 4; round++) {
      let state = this.authStates.get(scope) ?? this.initialAuth();
      if (state.tokenKey !== null && this.tokens.get(state.tokenKey) === undefined) state = this.initialAuth();
      const headers: Record<string, string> = { 'user-agent': 'shifter-ts-imagegw' };
      if (extra.accept) headers.accept = extra.accept;
      if (extra.range) headers.range = extra.range;
      if (state.header) headers.authorization = state.header;
      const head = extra.method === 'HEAD';
      const res = await (head ? send : sendFollowingRedirects)({
        method: head ? 'HEAD' : 'GET',
        url,
        headers,
        env: this.env,
        ...this.timeouts,
        ...(ca !== undefined ? { ca } : {}),
        ...(signal ? { signal } : {}),
        ...(this.guard ? { guard: this.guard } : {}),
      });
      if ((res.status === 401 || res.status === 403) && res.url.origin === url.origin) {
        const challenges = parseChallenges(res.headers['www-authenticate']);
        discard(res);
        const next = await this.escalate(repository, state, challenges, signal);
        if (next === null) throw this.authFailed(repository, state, res.status);
        this.authStates.set(scope, next);
        continue;
      }
      if (res.status >= 500 || res.status === 429) throw await this.unexpected(res, url.pathname);
      return { res, credentialed: state.stage === 'credentialed' || state.stage === 'basic' };
    }
    throw new ShifterError(
      'AUTH_FAILED',
      `${this.registry} kept asking for authentication for ${repository}; check the registry's token service`,
    );
  }

  /** The next authentication to try after a refusal, or null when there is nothing left to try. */
  private async escalate(
    repository: string,
    state: AuthState,
    challenges: Challenge[],
    signal?: AbortSignal,
  ): Promise<AuthState | null> {
    const creds = this.endpoint.credentials;
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    if (this.endpoint.authMethod === 'basic' || !bearer) {
      if (state.stage !== 'none' || !creds) return null;
      assertSafeForCredentials(this.base, this.registry);
      return { stage: 'basic', header: basicAuthorization(creds), tokenKey: null };
    }
    const scope = pullScope(repository);
    if (state.stage === 'none') {
      const anonymous = await this.token(bearer, scope, false, signal);
      if (anonymous !== null)
        return { stage: 'anonymous', header: `Bearer ${anonymous.token}`, tokenKey: anonymous.key };
    } else if (state.stage !== 'anonymous') {
      return null;
    }
    if (!creds) return null;
    const credentialed = await this.token(bearer, scope, true, signal);
    if (credentialed === null) return null;
    return { stage: 'credentialed', header: `Bearer ${credentialed.token}`, tokenKey: credentialed.key };
  }

  /** A bearer token from the challenge's realm; null when the token server refuses us. */
  private async token(
    challenge: Challenge,
    scope: string,
    withCredentials: boolean,
    signal?: AbortSignal,
  ): Promise<{ token: string; key: string } | null> {
    const url = tokenUrl(challenge, scope);
    const key = TokenCache.key(url.origin + url.pathname, challenge.params.service ?? '', scope, withCredentials);
    const cached = this.tokens.get(key);
    if (cached !== undefined) return { token: cached, key };
    const headers: Record<string, string> = { 'user-agent': 'shifter-ts-imagegw', accept: 'application/json' };
    if (withCredentials) {
      assertSafeForCredentials(url, this.registry);
      headers.authorization = basicAuthorization(this.endpoint.credentials!);
    }
    const ca = await this.caBundle();
    return withRetries(`getting a token from ${url.host}`, this.policy(signal), async () => {
      const res = await sendFollowingRedirects({
        method: 'GET',
        url,
        headers,
        env: this.env,
        ...this.timeouts,
        ...(ca !== undefined ? { ca } : {}),
        ...(signal ? { signal } : {}),
        ...(this.guard ? { guard: this.guard } : {}),
      });
      if (res.status === 401 || res.status === 403) {
        discard(res);
        return null;
      }
      if (res.status !== 200) throw await this.unexpected(res, `a token for ${scope}`);
      const { token, expiresIn } = parseTokenResponse(await this.bounded(res, TOKEN_LIMIT, 'token answer'));
      this.tokens.set(key, token, expiresIn);
      this.log.debug({ realm: url.origin + url.pathname, scope, withCredentials }, 'got registry token');
      return { token, key };
    });
  }

  private authFailed(repository: string, state: AuthState, status: number): ShifterError {
    const used = state.stage === 'credentialed' || state.stage === 'basic' || this.endpoint.credentials !== undefined;
    const why = used
      ? 'the credentials were rejected or lack pull access: check the username and password, run `shifterimg login` again'
      : 'the image is private or does not exist: if it is private, run `shifterimg login` for this registry and pull again';
    return new ShifterError('AUTH_FAILED', `${this.registry} refused access to ${repository} (HTTP ${status}); ${why}`);
  }
}

function headerDigest(v: string | string[] | undefined): string | null {
  const s = Array.isArray(v) ? v[0] : v;
  return s !== undefined && isDigest(s.trim()) ? s.trim() : null;
}
