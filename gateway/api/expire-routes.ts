/**
 * `expire` and `autoexpire` (upstream api.py). Upstream's C `shifterimg` sends GET; POST is served
 * too (the verb changes state). Answers keep upstream's shape: `{"status": true}` for expire,
 * `{"status": [expired ids]}` for autoexpire. Expiry itself: gateway/expire/expiry.ts.
 */
import type { FastifyPluginAsync } from 'fastify';
import { ShifterError } from '../../common/errors.js';
import { canRead } from '../auth/acl.js';
import { Expiry } from '../expire/expiry.js';
import { lookupTarget } from './image-target.js';
import { assertAdmin, platformOf, sessionOf } from './request-context.js';
import type { ApiContext } from './routes.js';
import { imageParams, systemParams, type ImageParams, type SystemParams } from './schemas.js';

export const expireRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  const { config, store, manager, auth, log } = ctx;
  const expiry = new Expiry({
    config,
    store,
    log,
    withImageLock: (system, id, fn) => manager.withImageLock(system, id, fn),
    isActive: (key) => manager.isActive(key),
  });

  const expire = async (req: { params: ImageParams } & Parameters<typeof sessionOf>[1]) => {
    const platform = platformOf(config, req.params.system);
    const session = await sessionOf(auth, req, platform);
    const { itype, tag } = lookupTarget(req.params, config.defaultImageLocation);
    const visible =
      itype === 'id'
        ? await store.findReadyById(platform.name, tag)
        : await store.findReadyByTag(platform.name, itype, tag);
    // An image the caller may not read is "not there" for them, as in a lookup.
    if (visible && !session.isAdmin && !canRead(visible, session.identity)) {
      throw new ShifterError(
        'NOT_FOUND',
        `image ${itype}:${tag} is not on ${platform.name}, so there is nothing to expire`,
      );
    }
    await expiry.expire(platform, itype, tag, session);
    return { status: true };
  };
  const route = { schema: { params: imageParams } };
  app.get<{ Params: ImageParams }>('/api/expire/:system/:imgtype/*', route, expire);
  app.post<{ Params: ImageParams }>('/api/expire/:system/:imgtype/*', route, expire);

  app.get<{ Params: SystemParams }>('/api/autoexpire/:system/', { schema: { params: systemParams } }, async (req) => {
    const platform = platformOf(config, req.params.system);
    assertAdmin(await sessionOf(auth, req, platform), 'autoexpire');
    return { status: await expiry.autoexpire(platform.name) };
  });
};
