/**
 * The node's client for the lazy image cache's routes (contract: common/chunk-index.ts; server:
 * gateway/api/chunk-routes.ts), one gateway (or one HTTP cache in front of it) per client: a
 * node that knows several makes one client each and moves on when one fails.
 *
 * Credentials: the first request exchanges a munge credential made by root for a node token
 * (`POST /api/chunks/<system>/session`), sent as `Authorization: Bearer` until shortly before it
 * expires; a 401 (the gateway restarted, or another gateway answered) gets one fresh exchange and
 * one retry. Every request has a deadline. Nothing is trusted for being served: the index must
 * hash to the digest the caller got from the image's record, and every chunk to its entry in
 * the index, before either is returned.
 */
import { Agent, type Dispatcher } from 'undici';
import { chunkSpan, parseChunkIndex, sha256Hex, type ChunkIndex } from '../chunk-index.js';
import {
  CHUNK_PROFILE_VERSION,
  parseChunkProfile,
  serializeChunkProfile,
  type ChunkProfile,
} from '../chunk-profile.js';
import { describeError, ShifterError } from '../errors.js';
import type { ImageId } from '../image-descriptor.js';
import { GatewayAnswerError } from './errors.js';

export interface ChunkClientOptions {
  /** The gateway's (or a cache's) base URL, e.g. http://imagegw:5000 or http://cache:8080/prefix. */
  readonly gateway: string;
  readonly system: string;
  /** Deadline of each request, connect to last byte. */
  readonly timeoutMs: number;
  /** A fresh munge credential made by root on this node (munge refuses one it has seen). */
  readonly nodeCredential: () => Promise<string>;
  /** Parallel connections to the gateway (default 8). */
  readonly connections?: number;
}

/** What `GET /api/chunks/<system>/<id>` says about an image. */
export interface ImageFacts {
  readonly id: ImageId;
  /** sha256 hex of the index bytes: pass it to `index()`. */
  readonly indexDigest: string;
  readonly imageSize: number;
  readonly chunkSize: number;
  readonly chunkCount: number;
  /** The image's `.meta` text (common/image-meta.ts parses it). */
  readonly meta: string;
}

/** A token is renewed this long before it expires, so a request never carries one that dies on the way. */
const RENEW_MARGIN_S = 30;
const MAX_JSON_BYTES = 64 * 1024 * 1024;

interface Answer {
  readonly status: number;
  readonly body: Buffer;
}

function errorText(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    /* not the gateway's error shape: show the status alone */
  }
  return '';
}

export class ChunkClient {
  private readonly agent: Agent;
  private readonly origin: string;
  private readonly prefix: string;
  private token: { value: string; expires: number } | null = null;
  private exchanging: Promise<string> | null = null;

  constructor(private readonly opts: ChunkClientOptions) {
    let url: URL;
    try {
      url = new URL(opts.gateway);
    } catch {
      throw new ShifterError('BAD_CONFIG', `imageGateway entry '${opts.gateway}' is not an http(s) URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new ShifterError('BAD_CONFIG', `imageGateway entry '${opts.gateway}' is not an http(s) URL`);
    }
    this.origin = url.origin;
    this.prefix = url.pathname.replace(/\/+$/, '');
    this.agent = new Agent({
      connections: opts.connections ?? 8,
      connect: { timeout: opts.timeoutMs },
      headersTimeout: opts.timeoutMs,
      bodyTimeout: opts.timeoutMs,
    });
  }

  private base(id?: ImageId): string {
    const system = encodeURIComponent(this.opts.system);
    return `${this.prefix}/api/chunks/${system}${id === undefined ? '' : `/${id}`}`;
  }

  /** The image's facts, straight from the gateway (never cached): where the trusted index digest comes from. */
  async imageFacts(id: ImageId, signal?: AbortSignal): Promise<ImageFacts> {
    const answer = await this.authorized('GET', this.base(id), MAX_JSON_BYTES, signal);
    const facts = JSON.parse(this.expectOk(answer, `image ${id}`).toString('utf8')) as ImageFacts;
    if (facts.id !== id || typeof facts.indexDigest !== 'string' || typeof facts.meta !== 'string') {
      throw new GatewayAnswerError(`the gateway ${this.opts.gateway} sent image facts that are not for ${id}`);
    }
    return facts;
  }

  /** The image's chunk index, refused unless its bytes hash to `expectedDigest`. */
  async index(id: ImageId, expectedDigest: string, signal?: AbortSignal): Promise<ChunkIndex> {
    const answer = await this.authorized('GET', `${this.base(id)}/index`, MAX_JSON_BYTES, signal);
    const index = parseChunkIndex(this.expectOk(answer, `the chunk index of ${id}`), expectedDigest);
    if (index.imageId !== id)
      throw new ShifterError('DIGEST_MISMATCH', `the chunk index served for ${id} is not its own`);
    return index;
  }

  /** Chunk `n` of the image, refused (DIGEST_MISMATCH) unless it hashes to the index's entry. */
  async chunk(index: ChunkIndex, n: number, signal?: AbortSignal): Promise<Buffer> {
    const span = chunkSpan(index, n);
    const digest = index.chunks[n];
    const answer = await this.authorized('GET', `${this.base(index.imageId)}/chunk/${digest}`, span.length, signal);
    const bytes = this.expectOk(answer, `chunk ${n} of ${index.imageId}`);
    if (bytes.length !== span.length || sha256Hex(bytes) !== digest) {
      throw new ShifterError(
        'DIGEST_MISMATCH',
        `chunk ${n} of image ${index.imageId} from ${this.opts.gateway} does not match its digest ${digest}`,
      );
    }
    return bytes;
  }

  /** The recorded prefetch profile, or null when none has been recorded. */
  async profile(index: ChunkIndex, signal?: AbortSignal): Promise<ChunkProfile | null> {
    const answer = await this.authorized('GET', `${this.base(index.imageId)}/profile`, MAX_JSON_BYTES, signal);
    if (answer.status === 404) return null;
    return parseChunkProfile(this.expectOk(answer, `the prefetch profile of ${index.imageId}`), index);
  }

  /** Records a profile: 'stored', or 'exists' when one was recorded first (first wins). */
  async putProfile(index: ChunkIndex, chunks: readonly number[], signal?: AbortSignal): Promise<'stored' | 'exists'> {
    const body = serializeChunkProfile({ version: CHUNK_PROFILE_VERSION, imageId: index.imageId, chunks });
    const answer = await this.authorized('PUT', `${this.base(index.imageId)}/profile`, MAX_JSON_BYTES, signal, body);
    if (answer.status === 409) return 'exists';
    this.expectOk(answer, `recording the prefetch profile of ${index.imageId}`);
    return 'stored';
  }

  close(): Promise<void> {
    return this.agent.close();
  }

  private expectOk(answer: Answer, what: string): Buffer {
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    const why = errorText(answer.body);
    const message = `${what}: the gateway ${this.opts.gateway} answered ${answer.status}${why ? `: ${why}` : ''}`;
    if (answer.status === 404) throw new ShifterError('NOT_FOUND', message);
    if (answer.status === 401) throw new ShifterError('AUTH_FAILED', message);
    if (answer.status === 403) throw new ShifterError('PERMISSION_DENIED', message);
    throw new GatewayAnswerError(message, answer.status);
  }

  /** One request with the node token; a 401 gets a fresh token and one more try. */
  private async authorized(
    method: 'GET' | 'PUT',
    path: string,
    maxBytes: number,
    signal?: AbortSignal,
    body?: Buffer,
  ): Promise<Answer> {
    const first = await this.send(
      method,
      path,
      { authorization: `Bearer ${await this.bearer()}` },
      maxBytes,
      signal,
      body,
    );
    if (first.status !== 401) return first;
    this.token = null;
    return this.send(method, path, { authorization: `Bearer ${await this.bearer()}` }, maxBytes, signal, body);
  }

  private bearer(): Promise<string> {
    if (this.token && this.token.expires - RENEW_MARGIN_S > Date.now() / 1000) return Promise.resolve(this.token.value);
    this.exchanging ??= this.exchange().finally(() => {
      this.exchanging = null;
    });
    return this.exchanging;
  }

  private async exchange(): Promise<string> {
    let credential: string;
    try {
      credential = await this.opts.nodeCredential();
    } catch (e) {
      throw new ShifterError('AUTH_FAILED', `cannot create a munge credential for the gateway: ${describeError(e)}`, e);
    }
    const answer = await this.send('POST', `${this.base()}/session`, { authentication: credential }, 64 * 1024);
    const issued = JSON.parse(this.expectOk(answer, 'a node token').toString('utf8')) as {
      token?: unknown;
      expires?: unknown;
    };
    if (typeof issued.token !== 'string' || typeof issued.expires !== 'number') {
      throw new GatewayAnswerError(`the gateway ${this.opts.gateway} answered the session request without a token`);
    }
    this.token = { value: issued.token, expires: issued.expires };
    return issued.token;
  }

  private async send(
    method: 'GET' | 'PUT' | 'POST',
    path: string,
    headers: Record<string, string>,
    maxBytes: number,
    signal?: AbortSignal,
    body?: Buffer,
  ): Promise<Answer> {
    const deadline = AbortSignal.timeout(this.opts.timeoutMs);
    const abort = signal ? AbortSignal.any([signal, deadline]) : deadline;
    const request: Dispatcher.RequestOptions = {
      origin: this.origin,
      path,
      method,
      headers: body ? { ...headers, 'content-type': 'application/json' } : headers,
      signal: abort,
    };
    if (body) request.body = body;
    try {
      const res = await this.agent.request(request);
      const parts: Buffer[] = [];
      let size = 0;
      for await (const part of res.body) {
        size += (part as Buffer).length;
        // Error bodies are small; a success body past its bound is not what was asked for.
        if (size > Math.max(maxBytes, 64 * 1024)) {
          res.body.destroy();
          throw new GatewayAnswerError(
            `the gateway ${this.opts.gateway} sent more than the ${maxBytes} bytes asked for`,
          );
        }
        parts.push(part as Buffer);
      }
      return { status: res.statusCode, body: Buffer.concat(parts) };
    } catch (e) {
      if (e instanceof ShifterError) throw e;
      const why = deadline.aborted
        ? `no answer within ${this.opts.timeoutMs / 1000} s`
        : signal?.aborted
          ? 'cancelled'
          : describeError(e);
      throw new ShifterError(
        'UNREACHABLE',
        `cannot reach the image gateway ${this.opts.gateway} (${method} ${path}): ${why}`,
        e,
      );
    }
  }
}
