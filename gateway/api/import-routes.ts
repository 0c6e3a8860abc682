/**
 * `doimport` (upstream api.py): POST `{"filepath", "format": "squashfs", "allowed_uids"?,
 * "allowed_gids"?}` plus, new, the image's metadata (`ENV`, `ENTRY`, `CMD`, `WORKDIR`, `LABELS`).
 * Answers the record at once (HASHING); lookups show READY once the copy is done.
 * The import itself: gateway/import/importer.ts.
 */
import type { FastifyPluginAsync } from 'fastify';
import { ShifterError } from '../../common/errors.js';
import { parseIdList, withReadableTags, withRequester } from '../auth/acl.js';
import { Importer } from '../import/importer.js';
import { normalizeTag } from '../pull/rules.js';
import { platformOf, sessionOf } from './request-context.js';
import { toApiRecord } from './response.js';
import type { ApiContext } from './routes.js';
import { importBody, imageParams, type ImageParams, type ImportBody } from './schemas.js';

export const importRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  const { config, store, manager, auth, log } = ctx;
  const importer = new Importer({
    config,
    store,
    log,
    withImageLock: (system, id, fn) => manager.withImageLock(system, id, fn),
  });

  app.post<{ Params: ImageParams; Body: ImportBody }>(
    '/api/doimport/:system/:imgtype/*',
    { schema: { params: imageParams, body: importBody } },
    async (req) => {
      const platform = platformOf(config, req.params.system);
      const session = await sessionOf(auth, req, platform);
      const { imgtype } = req.params;
      if (imgtype === 'id') {
        throw new ShifterError('BAD_ARGUMENT', 'an import needs a name: use type custom (or docker) and a tag, not id');
      }
      const raw = req.params['*'].replace(/\/+$/, '');
      if (!raw)
        throw new ShifterError(
          'BAD_ARGUMENT',
          'the image tag is missing from the URL; use /api/doimport/<system>/custom/<tag>/',
        );
      // As lookups name it (upstream added :latest to custom tags at lookup only, so they missed imports).
      const tag = normalizeTag(imgtype, raw, true);
      const body = req.body;
      const rec = await importer.start(
        {
          platform,
          itype: imgtype,
          tag,
          filepath: body.filepath,
          userACL: withRequester(parseIdList(body.allowed_uids, 'allowed_uids'), session.identity?.uid),
          groupACL: withRequester(parseIdList(body.allowed_gids, 'allowed_gids'), session.identity?.gid),
          meta: {
            env: body.ENV ?? [],
            entrypoint: body.ENTRY ?? null,
            cmd: body.CMD ?? null,
            workdir: body.WORKDIR ?? null,
            labels: body.LABELS ?? {},
          },
        },
        session,
      );
      return toApiRecord(withReadableTags(rec, session.identity));
    },
  );
};
