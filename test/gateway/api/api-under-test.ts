/**
 * The gateway's HTTP app in-process for `app.inject()`: the same server, routes, chunk and metrics
 * plugins (and timed store) main.ts builds, with a real SQLite store, the real pull manager (its
 * registry refuses connections, so pulls end in FAILURE) and mock authentication. No socket is opened.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { createLogger } from '../../../common/logger.js';
import { chunkApi } from '../../../gateway/api/chunk-routes.js';
import { metricsRoutes } from '../../../gateway/api/metrics-routes.js';
import { gatewayApi } from '../../../gateway/api/routes.js';
import type { NodeTokens } from '../../../gateway/chunks/node-token.js';
import { createHttpServer } from '../../../gateway/api/server.js';
import { createAuthenticator } from '../../../gateway/auth/session.js';
import { parseGatewayConfig, type GatewayConfig } from '../../../gateway/config/imagemanager.js';
import { GatewayMetrics } from '../../../gateway/metrics/gateway-metrics.js';
import { timedStore } from '../../../gateway/metrics/timed-store.js';
import { PullManager } from '../../../gateway/pull/manager.js';
import type { ImageStore } from '../../../gateway/store/image-store.js';
import { openImageStore } from '../../../gateway/store/open-store.js';

export const ALICE = { authentication: 'good:alice:users::1000:100' };
export const BOB = { authentication: 'good:bob:staff::1001:101' };
export const ROOT = { authentication: 'good:root:root::0:0' };

export interface ApiUnderTest {
  app: FastifyInstance;
  config: GatewayConfig;
  store: ImageStore;
  call(
    method: InjectOptions['method'],
    url: string,
    headers?: Record<string, string>,
    payload?: string,
    remoteAddress?: string,
  ): Promise<Answer>;
  close(): Promise<void>;
}

export interface Answer {
  status: number;
  type: string | undefined;
  text: string;
  json: Record<string, unknown>;
}

export async function startApi(
  extraConfig: Record<string, unknown> = {},
  options: {
    tokens?: NodeTokens;
    /** What the chunk routes see of the store (a test slows its answers down with it). */
    chunkStore?: (store: ImageStore) => ImageStore;
  } = {},
): Promise<ApiUnderTest> {
  const dir = await mkdtemp(join(tmpdir(), 'gw-api-'));
  const { config } = parseGatewayConfig({
    CacheDirectory: join(dir, 'cache'),
    ExpandDirectory: join(dir, 'expand'),
    Authentication: 'mock',
    DefaultImageLocation: '127.0.0.1:9',
    Locations: { '127.0.0.1:9': { url: 'http://127.0.0.1:9' } },
    Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') }, admins: ['root'] } },
    ...extraConfig,
  });
  const log = createLogger('gateway-test', 'silent');
  const metrics = new GatewayMetrics();
  const store = timedStore(await openImageStore(config), metrics);
  const manager = new PullManager(store, config, log, metrics);
  await manager.recover();
  const app = createHttpServer(config.http, log);
  const auth = createAuthenticator(config.authentication);
  await app.register(gatewayApi, { config, store, manager, auth, log });
  const chunkStore = options.chunkStore?.(store) ?? store;
  await app.register(chunkApi, { config, store: chunkStore, auth, metrics, tokens: options.tokens });
  await app.register(metricsRoutes, { config, store, auth, metrics });
  await app.ready();
  return {
    app,
    config,
    store,
    async call(method, url, headers = {}, payload, remoteAddress) {
      const res = await app.inject({
        method,
        url,
        headers,
        ...(payload === undefined ? {} : { payload }),
        ...(remoteAddress === undefined ? {} : { remoteAddress }),
      });
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(res.body) as Record<string, unknown>;
      } catch {
        json = {};
      }
      const type = res.headers['content-type'];
      return { status: res.statusCode, type: typeof type === 'string' ? type : undefined, text: res.body, json };
    },
    async close() {
      await app.close();
      await manager.stop();
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
