/**
 * The REST API (upstream api.py routes, same paths and bodies). Every request may carry an
 * `authentication` header (see auth/session.ts). Errors are upstream's JSON body
 * `{"status", "error", "message": "<Reason>: <url>"}` with a fitting HTTP status (upstream
 * answered 404 for everything); never a stack trace.
 */
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { isShifterError, ShifterError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { canRead, parseIdList, withRequester } from '../auth/acl.js';
import type { Authenticator, Session } from '../auth/session.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';
import type { PullManager } from '../pull/manager.js';
import { normalizeTag } from '../pull/rules.js';
import type { ImageStore } from '../store/image-store.js';
import { apiError, httpStatusFor, toApiRecord } from './response.js';

export interface ApiContext {
  config: GatewayConfig;
  store: ImageStore;
  manager: PullManager;
  auth: Authenticator;
  log: Logger;
}

const HELP = 'Shifter image gateway. Routes: GET /api/list/<system>/, GET /api/lookup/<system>/<type>/<tag>/, '
  + 'POST /api/pull/<system>/<type>/<tag>/, GET /api/queue/<system>/, GET /api/expire/<system>/<type>/<tag>/, '
  + 'GET /api/autoexpire/<system>/, GET /api/metrics/<system>/, POST /api/doimport/<system>/<type>/<tag>/\n';

type Params = { system: string; imgtype?: string; '*'?: string };

function platformOf(config: GatewayConfig, system: string): PlatformConfig {
  // Own keys only: "constructor" or "toString" in the URL must not find Object.prototype's members.
  const p = Object.hasOwn(config.platforms, system) ? config.platforms[system] : undefined;
  if (!p) {
    throw new ShifterError('NOT_FOUND', `Bad session or system: system "${system}" is not configured on this gateway (known: ${Object.keys(config.platforms).join(', ')})`);
  }
  return p;
}

function tagOf(params: Params): string {
  const tag = (params['*'] ?? '').replace(/\/+$/, '');
  if (!tag) throw new ShifterError('BAD_ARGUMENT', 'the image tag is missing from the URL; use /api/<verb>/<system>/<type>/<tag>/');
  return tag;
}

function parseBody(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === '') return {};
  if (typeof body === 'object' && !Array.isArray(body)) return body as Record<string, unknown>;
  throw new ShifterError('BAD_ARGUMENT', 'the request body must be a JSON object such as {"allowed_uids": "1001", "allowed_gids": "100"}');
}

export function buildApi(ctx: ApiContext): FastifyInstance {
  const { config, store, manager, auth, log } = ctx;
  const app = Fastify({ logger: false, routerOptions: { ignoreTrailingSlash: true, maxParamLength: 2048 }, bodyLimit: 64 * 1024 });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body).trim();
    if (text === '') return done(null, {});
    try {
      done(null, JSON.parse(text));
    } catch {
      done(new ShifterError('BAD_ARGUMENT', 'the request body is not valid JSON; send {"allowed_uids": "1001", "allowed_gids": "100"} or nothing'), undefined);
    }
  });

  app.setErrorHandler((err: unknown, req: FastifyRequest, reply: FastifyReply) => {
    if (isShifterError(err)) {
      const status = httpStatusFor(err.code);
      if (err.code === 'DISK_FULL') log.error({ url: req.url }, `request failed: ${err.message}`);
      if (err.code === 'INTERNAL' || status === 500) {
        log.error({ err, url: req.url }, 'request failed');
        const msg = err.code === 'INTERNAL' ? 'internal error; the gateway log has the details' : err.message;
        return reply.code(500).send(apiError(500, msg, req.url));
      }
      return reply.code(status).send(apiError(status, err.message, req.url));
    }
    const statusCode = (err as { statusCode?: number }).statusCode;
    if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
      return reply.code(statusCode).send(apiError(statusCode, (err as Error).message, req.url));
    }
    log.error({ err, url: req.url }, 'unexpected error while handling a request');
    return reply.code(500).send(apiError(500, 'internal error; the gateway log has the details', req.url));
  });

  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(apiError(404, `no such route: ${req.method} ${req.url.split('?')[0]}; GET / lists the routes`, req.url));
  });

  const sessionFor = async (req: FastifyRequest, platform: PlatformConfig): Promise<Session> => {
    const header = req.headers.authentication;
    return auth.authenticate(Array.isArray(header) ? header[0] : header, platform);
  };
  const wantsProgress = (req: FastifyRequest) => (req.query as Record<string, string> | undefined)?.progress === '1';

  app.get('/', async (_req, reply) => reply.type('text/plain').send(HELP));

  app.get<{ Params: Params }>('/api/list/:system/', async (req) => {
    const platform = platformOf(config, req.params.system);
    const session = await sessionFor(req, platform);
    await manager.expireFailures();
    const records = await store.listReady(platform.name);
    return { list: records.filter((r) => canRead(r, session.identity)).map((r) => toApiRecord(r, wantsProgress(req))) };
  });

  app.get<{ Params: Params }>('/api/lookup/:system/:imgtype/*', async (req) => {
    const platform = platformOf(config, req.params.system);
    const session = await sessionFor(req, platform);
    const itype = req.params.imgtype!;
    const tag = normalizeTag(itype, tagOf(req.params), true);
    await manager.expireFailures();
    const rec = itype === 'id' ? await store.findReadyById(platform.name, tag) : await store.findReadyByTag(platform.name, itype, tag);
    if (!rec || !canRead(rec, session.identity)) {
      throw new ShifterError('NOT_FOUND', `image ${itype}:${tag} is not available on ${platform.name}; pull it first (shifterimg pull ${tag})`);
    }
    const now = Date.now() / 1000;
    if (config.imageExpirationTimeoutSec !== null) {
      await store.update(rec.key, { expiration: now + config.imageExpirationTimeoutSec });
    }
    if (config.metrics) {
      await store.addMetric({
        user: session.identity?.user ?? null, uid: session.identity?.uid ?? null, system: platform.name,
        type: itype, tag, id: rec.id ?? '', time: now,
      });
    }
    return toApiRecord(rec, wantsProgress(req));
  });

  app.post<{ Params: Params }>('/api/pull/:system/:imgtype/*', async (req) => {
    const platform = platformOf(config, req.params.system);
    const session = await sessionFor(req, platform);
    const itype = req.params.imgtype!;
    const tag = normalizeTag(itype, tagOf(req.params), false);
    const body = parseBody(req.body);
    const uids = parseIdList(body.allowed_uids, 'allowed_uids');
    const gids = parseIdList(body.allowed_gids, 'allowed_gids');
    if ((uids.length > 0 || gids.length > 0) && !session.identity) {
      throw new ShifterError('AUTH_FAILED', 'restricting an image with allowed_uids/allowed_gids needs an authenticated request (send a munge credential in the authentication header)');
    }
    const rec = await manager.pull({
      system: platform.name, itype, tag,
      userACL: withRequester(uids, session.identity?.uid),
      groupACL: withRequester(gids, session.identity?.gid),
    }, session);
    return toApiRecord(rec, wantsProgress(req));
  });

  app.get<{ Params: Params }>('/api/queue/:system/', async (req) => {
    const platform = platformOf(config, req.params.system);
    await manager.expireFailures();
    const records = await store.listQueue(platform.name);
    return { list: records.map((r) => ({ status: r.status, image: r.pulltag })) };
  });

  const notYet = (what: string) => async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    platformOf(config, req.params.system);
    return reply.code(501).send(apiError(501, `${what} is not supported yet by this gateway`, req.url));
  };
  app.get<{ Params: Params }>('/api/expire/:system/:imgtype/*', notYet('expire'));
  app.get<{ Params: Params }>('/api/autoexpire/:system/', notYet('autoexpire'));
  app.get<{ Params: Params }>('/api/metrics/:system/', notYet('metrics'));
  app.post<{ Params: Params }>('/api/doimport/:system/:imgtype/*', notYet('doimport'));

  return app;
}
