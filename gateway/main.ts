/**
 * `shifter-gateway [--config FILE] [--listen HOST:PORT]`: the image gateway service.
 * Config: --config, else $GWCONFIG, else /etc/shifter/imagemanager.json.
 * Listen: default 0.0.0.0:8000, upstream's `python -m shifter_imagegw.api` port (its gunicorn
 * unit used 5000; pass --listen to match an existing `imageGateway` URL).
 * A bad config or command line prints one line and exits 2; SIGTERM/SIGINT stop accepting
 * requests and leave running pulls to be resumed at the next start.
 */
import { describeError, isShifterError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { chunkApi } from './api/chunk-routes.js';
import { metricsRoutes } from './api/metrics-routes.js';
import { gatewayApi } from './api/routes.js';
import { createHttpServer } from './api/server.js';
import { parseGatewayArgs } from './command-line.js';
import { createAuthenticator } from './auth/session.js';
import { configPathFrom, loadGatewayConfig } from './config/imagemanager.js';
import { GatewayMetrics } from './metrics/gateway-metrics.js';
import { timedStore } from './metrics/timed-store.js';
import { PullManager } from './pull/manager.js';
import { openImageStore } from './store/open-store.js';
import { systemdNotifier } from '../common/systemd-notify.js';

async function main(): Promise<void> {
  const args = parseGatewayArgs(process.argv.slice(2));
  const path = configPathFrom(args.config);
  let loaded;
  try {
    loaded = loadGatewayConfig(path);
  } catch (e) {
    process.stderr.write(`shifter-gateway: ${describeError(e)}\n`);
    process.exit(2);
  }
  const { config, warnings } = loaded;
  const log = createLogger('shifter-gateway', process.env.SHIFTER_LOG_LEVEL ?? config.logLevel);
  for (const w of warnings) log.warn(w);
  const notify = await systemdNotifier(log);
  if (config.authentication === 'mock')
    log.warn(
      'mock authentication is enabled: it is insecure, any client can claim any user; never use it in production',
    );

  const metrics = new GatewayMetrics();
  const store = timedStore(await openImageStore(config), metrics);
  const manager = new PullManager(store, config, log.child({ component: 'pull' }), metrics);
  await manager.recover();
  const app = createHttpServer(config.http, log.child({ component: 'api' }));
  const auth = createAuthenticator(config.authentication);
  await app.register(gatewayApi, { config, store, manager, auth, log: log.child({ component: 'api' }) });
  await app.register(chunkApi, { config, store, auth, metrics });
  await app.register(metricsRoutes, { config, store, auth, metrics });

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    notify('STOPPING=1');
    log.info({ signal }, 'shutting down: no new requests; running pulls resume at the next start');
    await app.close().catch((e: unknown) => log.error({ err: describeError(e) }, 'closing the HTTP server failed'));
    await manager.stop();
    await store.close().catch((e: unknown) => log.error({ err: describeError(e) }, 'closing the store failed'));
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));

  try {
    await app.listen({ host: args.listen.host, port: args.listen.port });
  } catch (e) {
    process.stderr.write(
      `shifter-gateway: cannot listen on ${args.listen.host}:${args.listen.port}: ${describeError(e)}\n`,
    );
    await manager.stop();
    await store.close();
    process.exit(2);
  }
  const addr = app.server.address();
  const port = typeof addr === 'object' && addr ? addr.port : args.listen.port;
  log.info(
    { host: args.listen.host, port, config: path, store: config.mongo ? 'mongodb' : config.metadataStore },
    `listening on http://${args.listen.host}:${port}`,
  );
  notify('READY=1');
}

main().catch((e: unknown) => {
  process.stderr.write(`shifter-gateway: ${isShifterError(e) ? e.message : `internal error: ${describeError(e)}`}\n`);
  process.exit(isShifterError(e) && e.code === 'BAD_CONFIG' ? 2 : 1);
});
