/**
 * shifterd: the root daemon on each compute node. Foreground, pino logs on stdout.
 *   shifterd --config /etc/shifter/udiRoot.conf [--socket PATH] [--admin-socket PATH]
 * Reads and vets the config at start (root-owned, not group/world writable), reloads it on
 * SIGHUP (a bad new config is logged and the old one kept), exits cleanly on SIGTERM/SIGINT.
 * Running containers never depend on this process: they hold their own namespaces, so a
 * restart or `kill -9` leaves them untouched (see environment-cache.ts).
 */
import { CommanderError } from 'commander';
import { join, dirname } from 'node:path';
import { ShifterError, describeError, isShifterError } from '../common/errors.js';
import type { ImageId } from '../common/image-descriptor.js';
import { createLogger } from '../common/logger.js';
import { readUdiRootConf, checkConfigFileTrust } from '../common/config/udiroot-file.js';
import { requireUdiRootKeys } from '../common/config/udiroot-conf.js';
import { attachImage, attachLocal, createEnvironment, loadAddon, runUserHook } from './adapters/index.js';
import { ImageResolver } from './image-resolver.js';
import { compileSite } from './spec-builder.js';
import { mungeCredentialAs } from './user-credential.js';
import { LaunchService, type DaemonState } from './launch-service.js';
import { startLaunchServer } from './launch-server.js';
import { startAdminServer } from './admin-server.js';
import { LazySupervisor } from './lazy/lazy-supervisor.js';
import { systemdNotifier } from '../common/systemd-notify.js';
import { ADMIN_SOCKET_NAME, DEFAULT_SOCKET, parseDaemonArgs } from './daemon-command-line.js';
import type { UdiRootConfig } from '../common/config/udiroot-conf.js';
import type { Logger } from '../common/logger.js';

/** How long the first cold start of a lazy image is recorded as its prefetch profile. */
const PROFILE_WINDOW_MS = 10_000;
const PREFETCH_PARALLEL = 8;

/** The FUSE server of lazy images, when udiRoot.conf sets lazyImageCache (read at start only). */
function lazySupervisor(config: UdiRootConfig, log: Logger): LazySupervisor | undefined {
  const lazy = config.lazyImageCache;
  if (lazy === undefined) return undefined;
  requireUdiRootKeys(config, ['imageGateway', 'system']);
  return new LazySupervisor({
    config: {
      cacheDir: lazy.dir,
      mountpoint: join(lazy.dir, 'mnt'),
      sizeBytes: lazy.sizeBytes,
      chunkTimeoutMs: lazy.chunkTimeoutSeconds * 1000,
      profileWindowMs: PROFILE_WINDOW_MS,
      prefetchParallel: PREFETCH_PARALLEL,
      bases: [...config.imageGateway],
      caches: [...config.lazyChunkCaches],
      system: config.system!,
      mungeSocket: config.mungeSocketPath,
    },
    factsTtlMs: lazy.factsTtlSeconds * 1000,
    log,
  });
}

function lazyServer(lazy: () => LazySupervisor | undefined): LazySupervisor {
  const server = lazy();
  if (server === undefined) {
    throw new ShifterError('BAD_CONFIG', 'lazyImageCache was set after shifterd started; restart shifterd');
  }
  return server;
}

async function loadState(
  path: string,
  generation: number,
  log: Logger,
  lazy: () => LazySupervisor | undefined,
): Promise<DaemonState> {
  const trust = await checkConfigFileTrust(path);
  if (trust) throw trust;
  const { config, warnings } = await readUdiRootConf(path);
  for (const w of warnings) log.warn({ key: w.key }, w.message);
  if (config.lazyImageCache === undefined) requireUdiRootKeys(config, ['imagePath']);
  if (!config.populateEtcDynamically) requireUdiRootKeys(config, ['etcPath']);
  const site = compileSite(config);
  const resolver = new ImageResolver({
    imagePath: config.imagePath ?? '',
    lazy:
      config.lazyImageCache === undefined
        ? undefined
        : {
            facts: (id) => lazyServer(lazy).facts(id),
            open: (id, indexDigest) => lazyServer(lazy).open(id, indexDigest),
            attached: (id, file) => lazyServer(lazy).attached(id, file),
          },
    allowLocalChroot: config.allowLocalChroot,
    gateways: config.imageGateway,
    system: config.system,
    defaultImageType: config.defaultImageType,
    gatewayTimeout: config.gatewayTimeout,
    credentialFor: (caller) => mungeCredentialAs(caller, config.mungeSocketPath),
  });
  return { config, site, generation, resolver };
}

async function main(): Promise<void> {
  const args = parseDaemonArgs(process.argv.slice(2));
  const log = createLogger('shifterd');
  const notify = await systemdNotifier(log);
  // upstream's umask: the native helper and the site hooks inherit it. A socket created under
  // it (0755) is not connectable by others until chmod opens it (launch 0666; admin 0600).
  process.umask(0o022);
  if (process.geteuid?.() !== 0)
    throw new ShifterError('PERMISSION_DENIED', 'shifterd must run as root (it builds mount namespaces)');
  // The lazy image server is made from the first configuration; reloads reach it through this.
  const lazyRef: { server?: LazySupervisor } = {};
  let state = await loadState(args.config, 1, log, () => lazyRef.server);
  const addon = loadAddon();
  const service = new LaunchService(() => state, { attachImage, attachLocal, createEnvironment, runUserHook }, log, {
    max: args.cacheMax,
    idleTtlMs: args.cacheIdleSeconds * 1000,
  });
  const lazy = lazySupervisor(state.config, log);
  lazyRef.server = lazy;
  if (lazy !== undefined) {
    // Mounts over a dead server's files read nothing: environments on them are dropped.
    lazy.onServerLost = (images) => {
      for (const e of service.cache.list()) if (images.includes(e.imageId as ImageId)) service.cache.remove(e.key);
    };
    await lazy.start();
  }
  const socketPath = args.socket ?? state.config.shifterdSocket ?? DEFAULT_SOCKET;
  const launch = await startLaunchServer({ socketPath, service, addon, log });
  const adminPath = args.adminSocket ?? join(dirname(socketPath), ADMIN_SOCKET_NAME);
  const admin = await startAdminServer({
    socketPath: adminPath,
    service,
    state: () => state,
    log,
    launchSocket: socketPath,
    lazy: () => lazy,
  });

  let reloading = false;
  process.on('SIGHUP', () => {
    if (reloading) return;
    reloading = true;
    notify('RELOADING=1');
    loadState(args.config, state.generation + 1, log, () => lazyRef.server)
      .then(
        (next) => {
          state = next;
          service.cache.invalidate();
          log.info({ generation: next.generation }, 'configuration reloaded');
        },
        (e: unknown) => {
          log.error({ err: describeError(e) }, 'configuration reload failed; keeping the previous configuration');
        },
      )
      .finally(() => {
        reloading = false;
        notify('READY=1');
      });
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    notify('STOPPING=1');
    log.info({ signal }, 'stopping');
    void Promise.all([launch.close(), admin.close()])
      .then(() => {
        service.cache.closeAll();
        return lazy?.stop();
      })
      .catch((e: unknown) => log.error({ err: describeError(e) }, 'lazy image server did not stop cleanly'))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  log.info({ socket: socketPath, admin: adminPath, generation: state.generation }, 'shifterd ready');
  notify('READY=1');
}

main().catch((e: unknown) => {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  const msg = isShifterError(e) ? e.message : `unexpected error: ${describeError(e)}`;
  process.stderr.write(`shifterd: ${msg}\n`);
  process.exit(1);
});
