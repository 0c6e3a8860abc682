/**
 * shifterd: the root daemon on each compute node. Foreground, pino logs on stdout.
 *   shifterd --config /etc/shifter/udiRoot.conf [--socket PATH] [--admin-socket PATH]
 * Reads and vets the config at start (root-owned, not group/world writable), reloads it on
 * SIGHUP (a bad new config is logged and the old one kept), exits cleanly on SIGTERM/SIGINT.
 * Running containers never depend on this process: they hold their own namespaces, so a
 * restart or `kill -9` leaves them untouched (see environment-cache.ts).
 */
import { Command, CommanderError } from 'commander';
import { join, dirname } from 'node:path';
import { ShifterError, describeError, isShifterError } from '../common/errors.js';
import { createLogger } from '../common/logger.js';
import { readUdiRootConf, checkConfigFileTrust } from '../common/config/udiroot-file.js';
import { requireUdiRootKeys } from '../common/config/udiroot-conf.js';
import { attachImage, createEnvironment, loadAddon, runUserHook } from './adapters/index.js';
import { ImageResolver } from './image-resolver.js';
import { compileSite } from './spec-builder.js';
import { mungeCredentialAs } from './user-credential.js';
import { LaunchService, type DaemonState } from './launch-service.js';
import { startLaunchServer } from './launch-server.js';
import { startAdminServer } from './admin-server.js';

export const DEFAULT_SOCKET = '/run/shifter/shifterd.sock';
const ADMIN_SOCKET_NAME = 'shifterd-admin.sock';

interface Args {
  config: string;
  socket?: string;
  adminSocket?: string;
  cacheMax: number;
  cacheIdleSeconds: number;
}

function parseArgs(argv: string[]): Args {
  const program = new Command('shifterd')
    .description('Node daemon: builds container environments for `shifter` launches')
    .requiredOption('--config <file>', 'udiRoot.conf')
    .option('--socket <path>', `launch socket (default: shifterdSocket from the config, else ${DEFAULT_SOCKET})`)
    .option(
      '--admin-socket <path>',
      `gRPC admin socket, root only (default: ${ADMIN_SOCKET_NAME} next to the launch socket)`,
    )
    .option('--cache-max <n>', 'environments kept for reuse', (v) => positiveInt(v, '--cache-max'), 256)
    .option(
      '--cache-idle-seconds <s>',
      'close an environment unused this long',
      (v) => positiveInt(v, '--cache-idle-seconds'),
      600,
    )
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `shifterd: ${s.slice(7)}` : s) });
  program.parse(argv, { from: 'user' });
  return program.opts<Args>();
}

function positiveInt(v: string, name: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0)
    throw new ShifterError('BAD_ARGUMENT', `${name} ${v} is not a positive whole number`);
  return n;
}

async function loadState(path: string, generation: number, log: ReturnType<typeof createLogger>): Promise<DaemonState> {
  const trust = await checkConfigFileTrust(path);
  if (trust) throw trust;
  const { config, warnings } = await readUdiRootConf(path);
  for (const w of warnings) log.warn({ key: w.key }, w.message);
  requireUdiRootKeys(config, ['imagePath']);
  if (!config.populateEtcDynamically) requireUdiRootKeys(config, ['etcPath']);
  const site = compileSite(config);
  const resolver = new ImageResolver({
    imagePath: config.imagePath!,
    gateways: config.imageGateway,
    system: config.system,
    defaultImageType: config.defaultImageType,
    gatewayTimeout: config.gatewayTimeout,
    credentialFor: (caller) => mungeCredentialAs(caller, config.mungeSocketPath),
  });
  return { config, site, generation, resolver };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = createLogger('shifterd');
  // upstream's umask: the native helper and the site hooks inherit it. A socket created under
  // it (0755) is not connectable by others until chmod opens it (launch 0666; admin 0600).
  process.umask(0o022);
  if (process.geteuid?.() !== 0)
    throw new ShifterError('PERMISSION_DENIED', 'shifterd must run as root (it builds mount namespaces)');
  let state = await loadState(args.config, 1, log);
  const addon = loadAddon();
  const service = new LaunchService(() => state, { attachImage, createEnvironment, runUserHook }, log, {
    max: args.cacheMax,
    idleTtlMs: args.cacheIdleSeconds * 1000,
  });
  const socketPath = args.socket ?? state.config.shifterdSocket ?? DEFAULT_SOCKET;
  const launch = await startLaunchServer({ socketPath, service, addon, log });
  const adminPath = args.adminSocket ?? join(dirname(socketPath), ADMIN_SOCKET_NAME);
  const admin = await startAdminServer({
    socketPath: adminPath,
    service,
    state: () => state,
    log,
    launchSocket: socketPath,
  });

  let reloading = false;
  process.on('SIGHUP', () => {
    if (reloading) return;
    reloading = true;
    loadState(args.config, state.generation + 1, log)
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
      });
  });
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void Promise.all([launch.close(), admin.close()]).finally(() => {
      service.cache.closeAll();
      process.exit(0);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  log.info({ socket: socketPath, admin: adminPath, generation: state.generation }, 'shifterd ready');
}

main().catch((e: unknown) => {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  const msg = isShifterError(e) ? e.message : `unexpected error: ${describeError(e)}`;
  process.stderr.write(`shifterd: ${msg}\n`);
  process.exit(1);
});
