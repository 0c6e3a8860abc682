/**
 * `shifterd`'s command line, defined once: main.ts parses with it and the man page (tools/man/)
 * lists its options, so the two cannot drift.
 */
import { Command, InvalidArgumentError } from 'commander';
import { VERSION_LINE } from '../common/version.js';

export const DEFAULT_SOCKET = '/run/shifter/shifterd.sock';
export const ADMIN_SOCKET_NAME = 'shifterd-admin.sock';

export interface DaemonArgs {
  config: string;
  socket?: string;
  adminSocket?: string;
  cacheMax: number;
  cacheIdleSeconds: number;
}

/** Commander reports an InvalidArgumentError as a usage error (exit 2), naming the option. */
function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('it must be a positive whole number.');
  return n;
}

export function shifterdProgram(): Command {
  return new Command('shifterd')
    .description('Node daemon: builds container environments for `shifter` launches')
    .version(VERSION_LINE, '--version', 'print the version and exit')
    .requiredOption('--config <file>', 'udiRoot.conf')
    .option('--socket <path>', `launch socket (default: shifterdSocket from the config, else ${DEFAULT_SOCKET})`)
    .option(
      '--admin-socket <path>',
      `gRPC admin socket, root only (default: ${ADMIN_SOCKET_NAME} next to the launch socket)`,
    )
    .option('--cache-max <n>', 'environments kept for reuse', positiveInt, 256)
    .option('--cache-idle-seconds <s>', 'close an environment unused this long', positiveInt, 600);
}

/** Throws CommanderError for help, version (exit code 0) and a bad command line. */
export function parseDaemonArgs(argv: readonly string[]): DaemonArgs {
  const program = shifterdProgram()
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.startsWith('error:') ? `shifterd: ${s.slice(7)}` : s) });
  program.parse([...argv], { from: 'user' });
  return program.opts<DaemonArgs>();
}
