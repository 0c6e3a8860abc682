/**
 * Where chunks come from: the gateway's chunk routes (common/chunk-index.ts), tried in order over
 * a list of base URLs (the image gateways today; HTTP caches in front of them later), each
 * request bounded by a deadline. fetch() does its I/O on sockets, not on the libuv threadpool,
 * so readers blocked on FUSE can never starve the fetches that would unblock them.
 */
import { ShifterError, describeError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';

/** The `authentication` header of a request; undefined sends none. */
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

export class ChunkSource {
  private readonly opts: ChunkSourceOptions;

  constructor(opts: ChunkSourceOptions) {
    if (opts.bases.length === 0) throw new ShifterError('BAD_CONFIG', 'lazy images need imageGateway in udiRoot.conf');
    this.opts = opts;
  }

  describe(): string {
    return this.opts.bases.join(', ');
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
      const headers: Record<string, string> = {};
      const credential = await this.opts.credential?.();
      if (credential !== undefined) headers.authentication = credential;
      if (body !== undefined) headers['content-type'] = 'application/json';
      try {
        const res = await fetch(new URL(path, base), { method, headers, body, signal: deadline });
        const bytes = Buffer.from(await res.arrayBuffer());
        if (res.ok || (method === 'PUT' && res.status === 409)) return { status: res.status, bytes };
        if (res.status === 404) throw new ShifterError('NOT_FOUND', `${what} is not at ${base} (404)`);
        failures.push(`${base} (HTTP ${res.status})`);
      } catch (e) {
        if (e instanceof ShifterError) throw e;
        failures.push(`${base} (${deadline.aborted ? 'timed out' : describeCause(e)})`);
      }
    }
    throw new ShifterError('UNREACHABLE', `cannot fetch ${what}: ${failures.join(', ') || 'timed out'}`);
  }
}

function describeCause(e: unknown): string {
  const cause = (e as { cause?: { code?: unknown } }).cause;
  return typeof cause?.code === 'string' ? cause.code : describeError(e);
}
