/**
 * The lazy image cache's routes (contract: common/chunk-index.ts), a plugin of their own:
 *   POST   /api/chunks/<system>/session            root munge credential -> node token (chunks/node-token.ts)
 *   GET    /api/chunks/<system>/<id>               image facts: index digest, sizes, the `.meta` text (no-store)
 *   GET    /api/chunks/<system>/<id>/index         the index bytes
 *   GET    /api/chunks/<system>/<id>/chunk/<sha>   one chunk (Range inside it allowed)
 *   GET    /api/chunks/<system>/<id>/profile       the prefetch profile
 *   PUT    /api/chunks/<system>/<id>/profile       first profile wins (409 after)
 *   DELETE /api/chunks/<system>/<id>/profile       an admin resets it
 * Everything but DELETE needs a node: `Authorization: Bearer <token>` or a munge credential made
 * by root in `authentication`; ordinary users cannot download image bytes. Index and chunks have
 * a strong ETag (their sha256) and are immutable, so any HTTP cache between nodes and the gateway
 * can serve them. Only images READY on the system with `.meta` in place are served; an image
 * converted before indexes existed is indexed on its first request.
 * Index and chunk answers go through admission control (chunks/admission.ts): a node is known by
 * its token, else by its address; a request refused there is answered 503 with Retry-After.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { chunkSpan, isChunkDigest, sha256Hex } from '../../common/chunk-index.js';
import { MAX_PROFILE_BYTES, parseChunkProfile } from '../../common/chunk-profile.js';
import { ShifterError } from '../../common/errors.js';
import { isImageId, type ImageId } from '../../common/image-descriptor.js';
import type { Authenticator } from '../auth/session.js';
import { ChunkAdmission } from '../chunks/admission.js';
import { ChunkIndexFiles, type StoredChunkIndex } from '../chunks/index-file.js';
import { byteRange, IMMUTABLE, notModified, REVALIDATE, strongEtag } from '../chunks/http-caching.js';
import { createNodeTokens, type NodeTokens } from '../chunks/node-token.js';
import { profilePath, readProfile, removeProfile, storeFirstProfile } from '../chunks/profile-file.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { imageFiles, imageFilesComplete } from '../transfer/local.js';
import type { ImageStore } from '../store/image-store.js';
import { apiError } from './response.js';
import { platformOf } from './request-context.js';

export interface ChunkApiContext {
  config: GatewayConfig;
  store: ImageStore;
  auth: Authenticator;
  /** Tests pass their own to control expiry; the gateway draws a fresh secret. */
  tokens?: NodeTokens;
  /** Counts what reached the gateway (a cache in front answers the rest). */
  metrics?: GatewayMetrics;
}

interface SystemParams {
  system: string;
}
interface ImageParams extends SystemParams {
  id: string;
}
interface ChunkParams extends ImageParams {
  sha: string;
}

const string = { type: 'string', minLength: 1 } as const;
const schema = (props: readonly string[]) => ({
  params: {
    type: 'object',
    required: props,
    additionalProperties: false,
    properties: Object.fromEntries(props.map((p) => [p, string])),
  },
});

const OCTETS = 'application/octet-stream';

function header(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export const chunkApi: FastifyPluginAsync<ChunkApiContext> = async (app, ctx) => {
  const { config, store, auth, metrics } = ctx;
  const tokens = ctx.tokens ?? createNodeTokens();
  const indexes = new ChunkIndexFiles();
  const admission = new ChunkAdmission(config.chunkAdmission);
  metrics?.watchChunkQueue(() => ({ queued: admission.depth, running: admission.inFlight }));

  // Profiles are validated byte for byte (common/chunk-profile.ts): take every body as it came.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_PROFILE_BYTES }, (_req, body, done) =>
    done(null, body),
  );

  const sessionRoute = (system: string) => `POST /api/chunks/${system}/session`;

  /** Lets a node through, or throws: image bytes are for nodes (root), never for users. */
  const requireNode = async (req: FastifyRequest, platform: PlatformConfig): Promise<void> => {
    const authorization = header(req, 'authorization');
    if (authorization !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
      const check = m ? tokens.check(m[1], platform.name) : 'invalid';
      if (check === 'valid') return;
      throw new ShifterError(
        'AUTH_FAILED',
        `the node token is ${check === 'expired' ? 'expired' : 'not one this gateway issued (was it restarted?)'}: ` +
          `get a new one with ${sessionRoute(platform.name)} and a munge credential made by root`,
      );
    }
    const credential = header(req, 'authentication')?.trim();
    if (!credential) {
      throw new ShifterError(
        'AUTH_FAILED',
        'image chunks are served to compute nodes only: send a munge credential made by root in the ' +
          `authentication header, or a token from ${sessionRoute(platform.name)} as Authorization: Bearer`,
      );
    }
    const session = await auth.authenticate(credential, platform);
    if (session.identity?.uid !== 0) {
      throw new ShifterError(
        'PERMISSION_DENIED',
        `user ${session.identity?.user ?? 'anonymous'} may not download image bytes: only root on a compute ` +
          'node may (the node daemon does it); run the image with shifter instead',
      );
    }
  };

  /** A READY image of the system with its files complete, its index (made now if it predates indexes). */
  const readyImage = async (
    platform: PlatformConfig,
    id: string,
  ): Promise<{ id: ImageId; index: StoredChunkIndex }> => {
    const notHere = () =>
      new ShifterError('NOT_FOUND', `image ${id} is not on ${platform.name}; pull it first (shifterimg pull)`);
    if (!isImageId(id)) throw notHere();
    const rec = await store.findReadyById(platform.name, id);
    if (!rec || !(await imageFilesComplete(platform, id))) throw notHere();
    const index = await indexes.get(platform.imageDir, id);
    if (rec.chunkIndex !== index.digest) await store.update(rec.key, { chunkIndex: index.digest });
    return { id, index };
  };

  /** Sends `bytes`-addressed content with its validators, or 304 when the client has it. */
  const cached = (req: FastifyRequest, reply: FastifyReply, digest: string, cacheControl: string): boolean => {
    const etag = strongEtag(digest);
    reply.header('etag', etag).header('cache-control', cacheControl);
    if (!notModified(header(req, 'if-none-match'), etag)) return false;
    void reply.code(304).send();
    return true;
  };

  /**
   * Waits for an answer slot, held until the answer is sent or the client is gone; false when the
   * request was answered 503 here (refused, or its client left while it waited).
   */
  const admitted = async (req: FastifyRequest, reply: FastifyReply): Promise<boolean> => {
    const gone = new AbortController();
    reply.raw.once('close', () => gone.abort());
    const bearer = /^Bearer\s+(\S+)$/i.exec(header(req, 'authorization')?.trim() ?? '');
    const ticket = await admission.admit(bearer ? `token ${bearer[1]}` : `address ${req.ip}`, gone.signal);
    if (ticket.kind === 'admitted') {
      if (gone.signal.aborted) ticket.release();
      else reply.raw.once('close', ticket.release).once('finish', ticket.release);
      return true;
    }
    // A client gone while it waited gets its answer too: fastify must see every request answered.
    const why = ticket.kind === 'refused' ? ticket.why : 'the client closed the connection while it waited';
    if (ticket.kind === 'refused') {
      metrics?.chunkRefused(ticket.reason);
      reply.header('retry-after', String(ticket.retryAfterSeconds));
    }
    void reply
      .code(503)
      .header('cache-control', 'no-store')
      .type('application/json')
      .send(apiError(503, why, req.url));
    return false;
  };

  app.post<{ Params: SystemParams }>(
    '/api/chunks/:system/session',
    { schema: schema(['system']) },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      if (header(req, 'authorization') !== undefined) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          'a node token cannot be exchanged for another: send a munge credential made by root in the authentication header',
        );
      }
      await requireNode(req, platform);
      return reply.header('cache-control', 'no-store').send(tokens.issue(platform.name));
    },
  );

  app.get<{ Params: ImageParams }>(
    '/api/chunks/:system/:id',
    { schema: schema(['system', 'id']) },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      await requireNode(req, platform);
      const { id, index } = await readyImage(platform, req.params.id);
      const meta = await readFile(imageFiles(platform, id).meta, 'utf8');
      metrics?.chunkAnswer('facts');
      return reply.header('cache-control', 'no-store').send({
        id,
        indexDigest: index.digest,
        imageSize: index.index.imageSize,
        chunkSize: index.index.chunkSize,
        chunkCount: index.index.chunks.length,
        meta,
      });
    },
  );

  app.get<{ Params: ImageParams }>(
    '/api/chunks/:system/:id/index',
    { schema: schema(['system', 'id']) },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      await requireNode(req, platform);
      if (!(await admitted(req, reply))) return reply;
      const { index } = await readyImage(platform, req.params.id);
      if (cached(req, reply, index.digest, IMMUTABLE)) return reply;
      metrics?.chunkAnswer('index');
      return reply.type('application/json').send(index.bytes);
    },
  );

  const chunk = async (req: FastifyRequest<{ Params: ChunkParams }>, reply: FastifyReply) => {
    const platform = platformOf(config, req.params.system);
    await requireNode(req, platform);
    if (!(await admitted(req, reply))) return reply;
    const { id, index } = await readyImage(platform, req.params.id);
    const { sha } = req.params;
    const n = isChunkDigest(sha) ? index.index.chunks.indexOf(sha) : -1;
    if (n < 0) {
      throw new ShifterError(
        'NOT_FOUND',
        `image ${id} has no chunk ${sha}: take chunk digests from ${req.url.replace(/\/chunk\/.*$/, '/index')}`,
      );
    }
    if (cached(req, reply, sha, IMMUTABLE)) return reply;
    const span = chunkSpan(index.index, n);
    const range = byteRange(header(req, 'range'), span.length);
    reply.type(OCTETS).header('accept-ranges', 'bytes');
    if (range.kind === 'unsatisfiable') {
      return reply
        .code(416)
        .header('content-range', `bytes */${span.length}`)
        .type('application/json')
        .send(apiError(416, `the range ${header(req, 'range')} is outside the chunk's ${span.length} bytes`, req.url));
    }
    const [from, to] = range.kind === 'partial' ? [range.start, range.end] : [0, span.length - 1];
    if (range.kind === 'partial') reply.code(206).header('content-range', `bytes ${from}-${to}/${span.length}`);
    reply.header('content-length', to - from + 1);
    if (req.method === 'HEAD') return reply.send();
    // Streamed with positioned reads: a chunk is never held whole, the image never read past it.
    const image = imageFiles(platform, id).image;
    metrics?.chunkAnswer('chunk', to - from + 1);
    return reply.send(createReadStream(image, { start: span.offset + from, end: span.offset + to }));
  };
  // HEAD is its own route: fastify's automatic one would read the chunk to throw it away and
  // would not keep the Content-Length a HEAD must carry.
  const chunkRoute = { schema: schema(['system', 'id', 'sha']), exposeHeadRoute: false };
  app.get<{ Params: ChunkParams }>('/api/chunks/:system/:id/chunk/:sha', chunkRoute, chunk);
  app.head<{ Params: ChunkParams }>('/api/chunks/:system/:id/chunk/:sha', chunkRoute, chunk);

  app.get<{ Params: ImageParams }>(
    '/api/chunks/:system/:id/profile',
    { schema: schema(['system', 'id']) },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      await requireNode(req, platform);
      const { id } = await readyImage(platform, req.params.id);
      const bytes = await readProfile(profilePath(platform.imageDir, id));
      if (!bytes) {
        throw new ShifterError(
          'NOT_FOUND',
          `image ${id} has no prefetch profile yet: the first cold start of it on a node records one`,
        );
      }
      if (cached(req, reply, sha256Hex(bytes), REVALIDATE)) return reply;
      metrics?.chunkAnswer('profile');
      return reply.type('application/json').send(bytes);
    },
  );

  app.put<{ Params: ImageParams; Body: Buffer }>(
    '/api/chunks/:system/:id/profile',
    { schema: schema(['system', 'id']), bodyLimit: MAX_PROFILE_BYTES },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      await requireNode(req, platform);
      const { id, index } = await readyImage(platform, req.params.id);
      const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
      const profile = parseChunkProfile(body, index.index);
      const outcome = await storeFirstProfile(profilePath(platform.imageDir, id), body);
      if (outcome === 'exists') {
        return reply
          .code(409)
          .type('application/json')
          .send(
            apiError(
              409,
              `image ${id} already has a prefetch profile (the first one recorded is kept); ` +
                `an admin resets it with DELETE ${req.url}`,
              req.url,
            ),
          );
      }
      return reply.code(201).send({ id, chunks: profile.chunks.length });
    },
  );

  app.delete<{ Params: ImageParams }>(
    '/api/chunks/:system/:id/profile',
    { schema: schema(['system', 'id']) },
    async (req, reply) => {
      const platform = platformOf(config, req.params.system);
      const session = await auth.authenticate(header(req, 'authentication'), platform);
      if (!session.isAdmin) {
        throw new ShifterError(
          session.identity ? 'PERMISSION_DENIED' : 'AUTH_FAILED',
          `only an admin of ${platform.name} may reset a prefetch profile: send an admin's munge credential`,
        );
      }
      if (!isImageId(req.params.id) || !(await removeProfile(profilePath(platform.imageDir, req.params.id)))) {
        throw new ShifterError('NOT_FOUND', `image ${req.params.id} has no prefetch profile on ${platform.name}`);
      }
      return reply.code(204).send();
    },
  );
};
