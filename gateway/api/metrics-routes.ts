/**
 * Metrics routes, a fastify plugin of their own:
 * - `GET /api/metrics/<system>/?limit=N` (upstream): the last N lookup records of the system
 *   (default 10), oldest first, each `{user, uid, system, type, tag, id, time}`; admins of the
 *   system only. Records exist when `Metrics: true` (one per lookup, as upstream).
 * - `GET /metrics`: the Prometheus text exposition of the gateway's own metrics
 *   (metrics/gateway-metrics.ts) for the addresses `MetricsAllow` admits (default loopback only;
 *   Prometheus cannot make munge credentials, so the address is the check). Others get 403.
 */
import type { FastifyPluginAsync } from 'fastify';
import { BlockList } from 'node:net';
import { ShifterError } from '../../common/errors.js';
import type { Authenticator } from '../auth/session.js';
import type { GatewayConfig, MetricsAllow } from '../config/imagemanager.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import type { ImageStore } from '../store/image-store.js';
import { platformOf } from './request-context.js';
import { metricsQuery, systemParams, type SystemParams } from './schemas.js';

export interface MetricsContext {
  config: GatewayConfig;
  store: ImageStore;
  auth: Authenticator;
  metrics: GatewayMetrics;
}

const DEFAULT_LIMIT = 10;

/** The address check for /metrics; null when every address may scrape. */
function scrapers(allow: MetricsAllow): BlockList | null {
  if (allow === 'all') return null;
  const list = new BlockList();
  for (const b of allow) list.addSubnet(b.address, b.prefix, b.family);
  return list;
}

function mayScrape(list: BlockList | null, remote: string | undefined): boolean {
  if (list === null) return true;
  if (remote === undefined) return false;
  // A dual-stack listener shows IPv4 clients as ::ffff:a.b.c.d.
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote)?.[1];
  return v4 !== undefined ? list.check(v4, 'ipv4') : list.check(remote, remote.includes(':') ? 'ipv6' : 'ipv4');
}

export const metricsRoutes: FastifyPluginAsync<MetricsContext> = async (app, ctx) => {
  const { config, store, auth, metrics } = ctx;
  const allowed = scrapers(config.metricsAllow);

  app.get<{ Params: SystemParams; Querystring: { limit?: number } }>(
    '/api/metrics/:system/',
    { schema: { params: systemParams, querystring: metricsQuery } },
    async (req) => {
      const platform = platformOf(config, req.params.system);
      const header = req.headers.authentication;
      const session = await auth.authenticate(Array.isArray(header) ? header[0] : header, platform);
      if (!session.identity) {
        throw new ShifterError(
          'AUTH_FAILED',
          'metrics are for the admins of the system; send a munge credential in the authentication header',
        );
      }
      if (!session.isAdmin) {
        throw new ShifterError(
          'PERMISSION_DENIED',
          `metrics of ${platform.name} are for its admins (Platforms.${platform.name}.admins); ` +
            `${session.identity.user} is not one`,
        );
      }
      return store.listMetrics(platform.name, req.query.limit ?? DEFAULT_LIMIT);
    },
  );

  app.get('/metrics', async (req, reply) => {
    if (!mayScrape(allowed, req.socket.remoteAddress)) {
      throw new ShifterError(
        'PERMISSION_DENIED',
        `${req.socket.remoteAddress ?? 'this address'} may not scrape /metrics; ` +
          "add it to MetricsAllow in the gateway's imagemanager.json",
      );
    }
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
};
