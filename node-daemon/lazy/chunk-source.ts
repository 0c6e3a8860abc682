/**
 * Where chunks come from: the gateway's chunk routes (common/chunk-index.ts). Index, chunk and
 * profile GETs go to the HTTP caches first (lazyChunkCaches), then to the image gateways
 * (imageGateway); the session exchange, the image facts (no-store) and profile PUTs go to the
 * gateways only. Each request is bounded by the read's deadline (lazyChunkTimeout). Within it, a
 * 503 (its Retry-After honoured, capped), 502, 504 or a connection refused or reset moves on to
 * the next source at once and, when every source failed, is retried after an exponential backoff
 * with full jitter (source-retry.ts); a source that failed is tried after the others for a
 * cool-down; a 404 is final. fetch() does its I/O on sockets, not on the libuv threadpool, so
 * readers blocked on FUSE can never starve the fetches that would unblock them.
 * With a node credential, each gateway gets one munge exchange (`POST .../session`) for a node
 * token sent as `Authorization: Bearer` until shortly before it expires: a munge credential per
 * chunk would cost a munge round trip per request, and munged refuses to decode one twice anyway.
 * Caches get a gateway's token, which they pass on with their misses. A 401 (the gateway
 * restarted) gets one fresh exchange and one retry.
 */
import { ShifterError, describeError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import {
  DEFAULT_RETRY_POLICY,
  SourceHealth,
  outcomeOfStatus,
  retryDelayMs,
  type AttemptOutcome,
  type RetryPolicy,
} from './source-retry.js';

/** A fresh munge credential made by root, exchanged for a node token; undefined sends no credential. */
export type NodeCredential = () => Promise<string | undefined>;

export interface ChunkSourceOptions {
  /** Image gateways' base URLs (`http://gw:8000`), tried in order (imageGateway). */
  readonly bases: readonly string[];
  /** HTTP caches' base URLs, tried in order before the gateways for cacheable GETs (lazyChunkCaches). */
  readonly caches?: readonly string[];
  readonly system: string;
  readonly credential?: NodeCredential;
  /** Which source served and which failed, a line per change of source at most every few seconds. */
  readonly log?: Logger;
  readonly retry?: RetryPolicy;
  /** In [0, 1): the jitter of backoffs. */
  readonly random?: () => number;
}

export type ProfileAnswer = { kind: 'found'; bytes: Buffer } | { kind: 'none' };

/** What the gateway recorded for an image: the digest its index must hash to, and its `.meta` text. */
export interface ImageFacts {
  readonly indexDigest: string;
  readonly meta: string;
}

const HEX64 = /^[0-9a-f]{64}$/;
/** A token is renewed this long before it expires, so none dies on the way to the gateway. */
const RENEW_MARGIN_S = 30;

interface NodeToken {
  value: string;
  expires: number;
}

/** A failed session exchange with one gateway, with what it means for a retry. */
class ExchangeFailure extends Error {
  constructor(readonly outcome: AttemptOutcome & { kind: 'transient' | 'refused' }) {
    super(outcome.why);
  }
}

type Method = 'GET' | 'PUT';
/** Index, chunk and profile GETs may be answered by caches; the rest only by gateways. */
type Route = 'cacheable' | 'gateway';

interface Answer {
  status: number;
  bytes: Buffer;
}

/** What one request to one source came to: an answer to return, or why not. */
type Attempt = { kind: 'answered'; answer: Answer } | Exclude<AttemptOutcome, { kind: 'ok' }>;

/** A line at most every this often per source and event, with the count of those left out. */
const LOG_INTERVAL_MS = 10_000;

/** Logs which source serves and which failed, rate-limited: a job start makes thousands of requests. */
class SourceLog {
  private readonly last = new Map<string, { at: number; skipped: number }>();
  private serving: string | undefined;

  constructor(private readonly log: Logger | undefined) {}

  served(source: string): void {
    if (source === this.serving) return;
    this.serving = source;
    this.note(`served ${source}`, (skipped) =>
      this.log?.info({ source, ...(skipped > 0 ? { skipped } : {}) }, 'chunks now come from this source'),
    );
  }

  failed(source: string, why: string, next: string | undefined): void {
    if (source === this.serving) this.serving = undefined;
    this.note(`failed ${source}`, (skipped) =>
      this.log?.warn(
        {
          source,
          err: why,
          next: next ?? 'retry after a backoff',
          ...(skipped > 0 ? { failuresNotLogged: skipped } : {}),
        },
        'chunk source failed; set aside for a cool-down',
      ),
    );
  }

  private note(key: string, write: (skipped: number) => void): void {
    const now = Date.now();
    const seen = this.last.get(key);
    if (seen !== undefined && now - seen.at < LOG_INTERVAL_MS) {
      seen.skipped++;
      return;
    }
    write(seen?.skipped ?? 0);
    this.last.set(key, { at: now, skipped: 0 });
  }
}

export class ChunkSource {
  private readonly opts: ChunkSourceOptions;
  private readonly caches: readonly string[];
  private readonly policy: RetryPolicy;
  private readonly health: SourceHealth;
  private readonly sourceLog: SourceLog;
  private readonly tokens = new Map<string, NodeToken>();
  private readonly exchanges = new Map<string, Promise<string | undefined>>();

  constructor(opts: ChunkSourceOptions) {
    if (opts.bases.length === 0) throw new ShifterError('BAD_CONFIG', 'lazy images need imageGateway in udiRoot.conf');
    this.opts = opts;
    this.caches = opts.caches ?? [];
    this.policy = opts.retry ?? DEFAULT_RETRY_POLICY;
    this.health = new SourceHealth(this.policy);
    this.sourceLog = new SourceLog(opts.log);
  }

  describe(): string {
    return [...this.caches, ...this.opts.bases].join(', ');
  }

  /** Has the first base's node token ready ahead of the requests that will need it. */
  async warm(deadline: AbortSignal): Promise<void> {
    await this.token(this.opts.bases[0], deadline);
  }

  private path(id: ImageId, tail?: string): string {
    const image = `/api/chunks/${encodeURIComponent(this.opts.system)}/${id}`;
    return tail === undefined ? image : `${image}/${tail}`;
  }

  /** The gateway's facts about image `id` (never cached by HTTP caches: `no-store`). */
  async facts(id: ImageId, deadline: AbortSignal): Promise<ImageFacts> {
    const what = `what the gateway recorded for image ${id}`;
    const { bytes } = await this.request('GET', 'gateway', this.path(id), deadline, what);
    let raw: unknown;
    try {
      raw = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new ShifterError('UNREACHABLE', `cannot fetch ${what}: the answer is not JSON`);
    }
    const r = (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
    if (r.id !== id || typeof r.indexDigest !== 'string' || !HEX64.test(r.indexDigest) || typeof r.meta !== 'string') {
      throw new ShifterError('UNREACHABLE', `cannot fetch ${what}: the answer is not the image facts of ${id}`);
    }
    return { indexDigest: r.indexDigest, meta: r.meta };
  }

  index(id: ImageId, deadline: AbortSignal): Promise<Buffer> {
    return this.get(this.path(id, 'index'), deadline, `the chunk index of image ${id}`);
  }

  chunk(id: ImageId, digest: string, deadline: AbortSignal): Promise<Buffer> {
    return this.get(this.path(id, `chunk/${digest}`), deadline, `chunk ${digest} of image ${id}`);
  }

  async profile(id: ImageId, deadline: AbortSignal): Promise<ProfileAnswer> {
    try {
      return { kind: 'found', bytes: await this.get(this.path(id, 'profile'), deadline, `the profile of ${id}`) };
    } catch (e) {
      if (e instanceof ShifterError && e.code === 'NOT_FOUND') return { kind: 'none' };
      throw e;
    }
  }

  /** 'exists' when another node recorded the image's profile first (the gateway keeps the first). */
  async putProfile(id: ImageId, body: Buffer, deadline: AbortSignal): Promise<'stored' | 'exists'> {
    const what = `the profile of ${id}`;
    const { status } = await this.request('PUT', 'gateway', this.path(id, 'profile'), deadline, what, body);
    return status === 409 ? 'exists' : 'stored';
  }

  private async get(path: string, deadline: AbortSignal, what: string): Promise<Buffer> {
    return (await this.request('GET', 'cacheable', path, deadline, what)).bytes;
  }

  /**
   * Rounds over the sources until one answers 2xx (or 409 to a PUT: the thing is there already),
   * one answers 404 (NOT_FOUND), every source refused, or the deadline passed (UNREACHABLE).
   */
  private async request(
    method: Method,
    route: Route,
    path: string,
    deadline: AbortSignal,
    what: string,
    body?: Buffer,
  ): Promise<Answer> {
    const sources = route === 'cacheable' ? [...this.caches, ...this.opts.bases] : [...this.opts.bases];
    const refused = new Set<string>();
    const failures = new Map<string, string>();
    for (let round = 0; ; round++) {
      let retryAfterMs: number | undefined;
      const order = this.health.order(sources.filter((s) => !refused.has(s)));
      for (const [n, source] of order.entries()) {
        if (deadline.aborted) break;
        const outcome = await this.attempt(source, method, path, deadline, body);
        if (outcome.kind === 'answered') {
          this.health.succeeded(source);
          this.sourceLog.served(source);
          return outcome.answer;
        }
        if (outcome.kind === 'not-found') throw new ShifterError('NOT_FOUND', `${what} is not at ${source} (404)`);
        failures.set(source, outcome.why);
        if (outcome.kind === 'refused') refused.add(source);
        else {
          this.health.failed(source, outcome.retryAfterMs);
          if (outcome.retryAfterMs !== undefined)
            retryAfterMs = Math.min(retryAfterMs ?? Infinity, outcome.retryAfterMs);
        }
        this.sourceLog.failed(source, outcome.why, order[n + 1]);
      }
      if (deadline.aborted || refused.size === sources.length) {
        const listed = [...failures].map(([source, why]) => `${source} (${why})`).join(', ');
        const gaveUp = deadline.aborted ? `; gave up after ${round + 1} rounds (lazyChunkTimeout)` : '';
        throw new ShifterError('UNREACHABLE', `cannot fetch ${what}: ${listed || 'timed out'}${gaveUp}`);
      }
      await sleep(retryDelayMs(round, retryAfterMs, this.policy, this.opts.random ?? Math.random), deadline);
    }
  }

  /** One request to one source: the answer when it counts as one, and what it came to. */
  private async attempt(
    source: string,
    method: Method,
    path: string,
    deadline: AbortSignal,
    body?: Buffer,
  ): Promise<Attempt> {
    const isCache = !this.opts.bases.includes(source);
    try {
      const token = () => (isCache ? this.cacheToken(deadline) : this.token(source, deadline));
      let held = await token();
      let res = await this.send(source, method, path, deadline, held, body);
      if (res.status === 401 && held !== undefined && this.forget(held)) {
        held = await token();
        res = await this.send(source, method, path, deadline, held, body);
      }
      const outcome = outcomeOfStatus(res.status, res.retryAfter, Date.now());
      if (outcome.kind === 'ok' || (method === 'PUT' && res.status === 409)) return { kind: 'answered', answer: res };
      return outcome.kind === 'refused' ? { kind: 'refused', why: errorWhy(res) } : outcome;
    } catch (e) {
      if (e instanceof ExchangeFailure) return e.outcome;
      return { kind: 'transient', why: deadline.aborted ? 'timed out' : describeCause(e) };
    }
  }

  private async send(
    base: string,
    method: Method,
    path: string,
    deadline: AbortSignal,
    token: string | undefined,
    body?: Buffer,
  ): Promise<Answer & { retryAfter: string | null; text: string }> {
    const headers: Record<string, string> = {};
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(new URL(path, base), { method, headers, body, signal: deadline });
    const bytes = Buffer.from(await res.arrayBuffer());
    const text = res.ok ? '' : bytes.toString('utf8', 0, Math.min(bytes.length, 4096));
    return { status: res.status, bytes, retryAfter: res.headers.get('retry-after'), text };
  }

  /** Drops a token a source no longer accepts; false when none was held (nothing to renew). */
  private forget(token: string): boolean {
    for (const [base, held] of this.tokens) {
      if (held.value === token) return this.tokens.delete(base);
    }
    return false;
  }

  /**
   * The token a cache passes on with its misses: a gateway's (held, or exchanged with the first
   * gateway that gives one). None when no gateway gives one: the cache may still hold the bytes.
   */
  private async cacheToken(deadline: AbortSignal): Promise<string | undefined> {
    for (const base of this.health.order(this.opts.bases)) {
      try {
        const token = await this.token(base, deadline);
        if (token !== undefined) return token;
      } catch (e) {
        if (!(e instanceof ExchangeFailure)) throw e;
        this.health.failed(base, e.outcome.kind === 'transient' ? e.outcome.retryAfterMs : undefined);
      }
    }
    return undefined;
  }

  /** The node token for `base`: the one held, or one exchange shared by every request waiting for it. */
  private token(base: string, deadline: AbortSignal): Promise<string | undefined> {
    const held = this.tokens.get(base);
    if (held !== undefined && held.expires - RENEW_MARGIN_S > Date.now() / 1000) return Promise.resolve(held.value);
    let pending = this.exchanges.get(base);
    if (pending === undefined) {
      pending = this.exchange(base, deadline).finally(() => this.exchanges.delete(base));
      this.exchanges.set(base, pending);
    }
    return pending;
  }

  private async exchange(base: string, deadline: AbortSignal): Promise<string | undefined> {
    const credential = await this.opts.credential?.();
    if (credential === undefined) return undefined;
    const url = new URL(`/api/chunks/${encodeURIComponent(this.opts.system)}/session`, base);
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: { authentication: credential }, signal: deadline });
    } catch (e) {
      throw new ExchangeFailure({ kind: 'transient', why: deadline.aborted ? 'timed out' : describeCause(e) });
    }
    const text = await res.text();
    if (!res.ok) {
      const why = `no node token: HTTP ${res.status} ${errorText(text)}`.trim();
      const outcome = outcomeOfStatus(res.status, res.headers.get('retry-after'), Date.now());
      throw new ExchangeFailure(outcome.kind === 'transient' ? { ...outcome, why } : { kind: 'refused', why });
    }
    let issued: { token?: unknown; expires?: unknown } = {};
    try {
      issued = JSON.parse(text) as typeof issued;
    } catch {
      /* checked below */
    }
    if (typeof issued.token !== 'string' || typeof issued.expires !== 'number') {
      throw new ExchangeFailure({ kind: 'refused', why: 'no node token: the session answer has none' });
    }
    this.tokens.set(base, { value: issued.token, expires: issued.expires });
    return issued.token;
  }
}

/** Resolves after `ms`, or at once when `deadline` fires. */
function sleep(ms: number, deadline: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (deadline.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      deadline.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    deadline.addEventListener('abort', done, { once: true });
  });
}

/** `HTTP 403 <the gateway's error text>`. */
function errorWhy(res: { status: number; text: string }): string {
  return `HTTP ${res.status} ${errorText(res.text)}`.trim();
}

/** The gateway's error text (`{"error": ...}`), or nothing. */
function errorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: unknown };
    return typeof parsed.error === 'string' ? parsed.error : '';
  } catch {
    return '';
  }
}

function describeCause(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : describeError(e);
}
