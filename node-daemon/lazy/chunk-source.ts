/**
 * Where chunks come from: the gateway's chunk routes (common/chunk-index.ts), tried in order over
 * a list of base URLs (image gateways, or HTTP caches in front of them), each request bounded by
 * a deadline. fetch() does its I/O on sockets, not on the libuv threadpool, so readers blocked on
 * FUSE can never starve the fetches that would unblock them.
 * With a node credential, each base gets one munge exchange (`POST .../session`) for a node token
 * sent as `Authorization: Bearer` until shortly before it expires: a munge credential per chunk
 * would cost a munge round trip per request, and munged refuses to decode one twice anyway. A 401
 * (the gateway restarted) gets one fresh exchange and one retry.
 */
import { ShifterError, describeError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';

/** A fresh munge credential made by root, exchanged for a node token; undefined sends no credential. */
export type NodeCredential = () => Promise<string | undefined>;

export interface ChunkSourceOptions {
  /** Base URLs (`http://gw:8000`), tried in order. */
  readonly bases: readonly string[];
  readonly system: string;
  readonly credential?: NodeCredential;
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

/** Why one base failed: the loop in request() moves on to the next base. */
class BaseFailure extends Error {}

export class ChunkSource {
  private readonly opts: ChunkSourceOptions;
  private readonly tokens = new Map<string, NodeToken>();
  private readonly exchanges = new Map<string, Promise<string | undefined>>();

  constructor(opts: ChunkSourceOptions) {
    if (opts.bases.length === 0) throw new ShifterError('BAD_CONFIG', 'lazy images need imageGateway in udiRoot.conf');
    this.opts = opts;
  }

  describe(): string {
    return this.opts.bases.join(', ');
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
    const { bytes } = await this.request('GET', this.path(id), deadline, what);
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
    const { status } = await this.request('PUT', this.path(id, 'profile'), deadline, `the profile of ${id}`, body);
    return status === 409 ? 'exists' : 'stored';
  }

  private async get(path: string, deadline: AbortSignal, what: string): Promise<Buffer> {
    return (await this.request('GET', path, deadline, what)).bytes;
  }

  /**
   * The first base that answers 2xx (or 409 to a PUT: the thing is there already) wins; a 404 from
   * any base is NOT_FOUND (the image has no such thing), anything else moves on to the next base
   * and, when all failed, is UNREACHABLE.
   */
  private async request(
    method: 'GET' | 'PUT',
    path: string,
    deadline: AbortSignal,
    what: string,
    body?: Buffer,
  ): Promise<{ status: number; bytes: Buffer }> {
    const failures: string[] = [];
    for (const base of this.opts.bases) {
      if (deadline.aborted) break;
      try {
        let res = await this.send(base, method, path, deadline, body);
        if (res.status === 401 && this.tokens.delete(base)) res = await this.send(base, method, path, deadline, body);
        if (res.ok || (method === 'PUT' && res.status === 409)) return res;
        if (res.status === 404) throw new ShifterError('NOT_FOUND', `${what} is not at ${base} (404)`);
        failures.push(`${base} (HTTP ${res.status})`);
      } catch (e) {
        if (e instanceof ShifterError) throw e;
        failures.push(`${base} (${deadline.aborted ? 'timed out' : describeCause(e)})`);
      }
    }
    throw new ShifterError('UNREACHABLE', `cannot fetch ${what}: ${failures.join(', ') || 'timed out'}`);
  }

  private async send(
    base: string,
    method: 'GET' | 'PUT',
    path: string,
    deadline: AbortSignal,
    body?: Buffer,
  ): Promise<{ ok: boolean; status: number; bytes: Buffer }> {
    const headers: Record<string, string> = {};
    const token = await this.token(base, deadline);
    if (token !== undefined) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(new URL(path, base), { method, headers, body, signal: deadline });
    return { ok: res.ok, status: res.status, bytes: Buffer.from(await res.arrayBuffer()) };
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
    const res = await fetch(url, { method: 'POST', headers: { authentication: credential }, signal: deadline });
    const text = await res.text();
    if (!res.ok) throw new BaseFailure(`no node token: HTTP ${res.status} ${errorText(text)}`.trim());
    let issued: { token?: unknown; expires?: unknown } = {};
    try {
      issued = JSON.parse(text) as typeof issued;
    } catch {
      /* checked below */
    }
    if (typeof issued.token !== 'string' || typeof issued.expires !== 'number') {
      throw new BaseFailure('no node token: the session answer has none');
    }
    this.tokens.set(base, { value: issued.token, expires: issued.expires });
    return issued.token;
  }
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
  if (e instanceof BaseFailure) return e.message;
  const cause = (e as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : describeError(e);
}
