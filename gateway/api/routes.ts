/**
 * The REST routes (upstream api.py: same paths, bodies and record shape) as a fastify plugin. Each
 * route has a JSON schema for its params, query string and body (schemas.ts); errors are thrown as
 * ShifterError values and shaped by the server's error handler (server.ts). Every request may carry
 * an `authentication` header (auth/session.ts); `/api/queue` requires one.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import { ShifterError } from '../../common/errors.js';
import { canRead, listedRecord, parseIdList, withReadableTags, withRequester } from '../auth/acl.js';
import type { Logger } from '../../common/logger.js';
import type { Authenticator, Session } from '../auth/session.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';
import type { PullManager } from '../pull/manager.js';
import type { ImageStore } from '../store/image-store.js';
import { lookupTarget, pullTarget } from './image-target.js';
import { expireRoutes } from './expire-routes.js';
import { importRoutes } from './import-routes.js';
import { platformOf, sessionOf } from './request-context.js';
import { toApiRecord } from './response.js';
import {
  imageParams,
  progressQuery,
  pullBody,
  systemParams,
  type ImageParams,
  type ProgressQuery,
  type PullBody,
  type SystemParams,
} from './schemas.js';

export interface ApiContext {
  config: GatewayConfig;
  store: ImageStore;
  manager: PullManager;
  auth: Authenticator;
  log: Logger;
}

const HELP =
  'Shifter image gateway. Routes: GET /api/list/<system>/, GET /api/lookup/<system>/<type>/<tag>/, ' +
  'POST /api/pull/<system>/<type>/<tag>/, GET /api/queue/<system>/, GET /api/expire/<system>/<type>/<tag>/, ' +
  'GET /api/autoexpire/<system>/, GET /api/metrics/<system>/, POST /api/doimport/<system>/<type>/<tag>/\n';

const BAD_JSON = 'the request body is not valid JSON; send {"allowed_uids": "1001", "allowed_gids": "100"} or nothing';

export const gatewayApi: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  const { config, store, manager, auth } = ctx;

  // Upstream's clients send JSON with any Content-Type (or none): parse every body as JSON.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body).trim();
    if (text === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new ShifterError('BAD_ARGUMENT', BAD_JSON), undefined);
    }
  });

  const sessionFor = (req: FastifyRequest, platform: PlatformConfig): Promise<Session> =>
    sessionOf(auth, req, platform);

  app.get('/', async (_req, reply) => reply.type('text/plain; charset=utf-8').send(HELP));

  app.get<{ Params: SystemParams; Querystring: ProgressQuery }>(
    '/api/list/:system/',
    {
      schema: { params: systemParams, querystring: progressQuery },
    },
    async (req) => {
      const platform = platformOf(config, req.params.system);
      const session = await sessionFor(req, platform);
      await manager.expireFailures();
      const records = await store.listReady(platform.name);
      const withProgress = req.query.progress === '1';
      const visible = records.flatMap((r) => listedRecord(r, session.identity) ?? []);
      return { list: visible.map((r) => toApiRecord(r, withProgress)) };
    },
  );

  app.get<{ Params: ImageParams; Querystring: ProgressQuery }>(
    '/api/lookup/:system/:imgtype/*',
    {
      schema: { params: imageParams, querystring: progressQuery },
    },
    async (req) => {
      const platform = platformOf(config, req.params.system);
      const session = await sessionFor(req, platform);
      const { itype, tag } = lookupTarget(req.params, config.defaultImageLocation);
      await manager.expireFailures();
      const rec =
        itype === 'id'
          ? await store.findReadyById(platform.name, tag)
          : await store.findReadyByTag(platform.name, itype, tag);
      if (!rec || !canRead(rec, session.identity)) {
        throw new ShifterError(
          'NOT_FOUND',
          `image ${itype}:${tag} is not available on ${platform.name}; pull it first (shifterimg pull ${tag})`,
        );
      }
      const now = Date.now() / 1000;
      if (config.imageExpirationTimeoutSec !== null) {
        await store.update(rec.key, { expiration: now + config.imageExpirationTimeoutSec });
      }
      if (config.metrics) {
        await store.addMetric({
          user: session.identity?.user ?? null,
          uid: session.identity?.uid ?? null,
          system: platform.name,
          type: itype,
          tag,
          id: rec.id ?? '',
          time: now,
        });
      }
      return toApiRecord(withReadableTags(rec, session.identity), req.query.progress === '1');
    },
  );

  app.post<{ Params: ImageParams; Querystring: ProgressQuery; Body: PullBody | undefined }>(
    '/api/pull/:system/:imgtype/*',
    {
      schema: { params: imageParams, querystring: progressQuery, body: pullBody },
      // Upstream's clients may send no body at all; that is the empty request.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req) => {
      const platform = platformOf(config, req.params.system);
      const session = await sessionFor(req, platform);
      const target = pullTarget(req.params, config.defaultImageLocation);
      const uids = parseIdList(req.body?.allowed_uids, 'allowed_uids');
      const gids = parseIdList(req.body?.allowed_gids, 'allowed_gids');
      if ((uids.length > 0 || gids.length > 0) && !session.identity) {
        throw new ShifterError(
          'AUTH_FAILED',
          'restricting an image with allowed_uids/allowed_gids needs an authenticated ' +
            'request (send a munge credential in the authentication header)',
        );
      }
      const rec = await manager.pull(
        {
          system: platform.name,
          ...target,
          requesterUid: session.identity?.uid ?? null,
          userACL: withRequester(uids, session.identity?.uid),
          groupACL: withRequester(gids, session.identity?.gid),
        },
        session,
      );
      return toApiRecord(withReadableTags(rec, session.identity), req.query.progress === '1');
    },
  );

  // Upstream answered anyone, and listed every pull's tag, private ones too: a caller must say who
  // they are and sees the pulls whose image they could read; admins see all.
  app.get<{ Params: SystemParams }>('/api/queue/:system/', { schema: { params: systemParams } }, async (req) => {
    const platform = platformOf(config, req.params.system);
    const session = await sessionFor(req, platform);
    if (!session.identity) {
      throw new ShifterError(
        'AUTH_FAILED',
        'the pull queue is shown to authenticated users only; send a munge ' +
          'credential in the authentication header (shifterimg queue does)',
      );
    }
    await manager.expireFailures();
    const records = await store.listQueue(platform.name);
    const visible = records.filter((r) => session.isAdmin || canRead(r, session.identity));
    return { list: visible.map((r) => ({ status: r.status, image: r.pulltag })) };
  });

  await app.register(expireRoutes, ctx);
  await app.register(importRoutes, ctx);
};
