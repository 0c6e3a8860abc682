/**
 * `shifter-node-check`'s command line, defined once for the program and its man page.
 *
 * A program of its own rather than `shifterd --check`: it must work exactly when shifterd does
 * not (stopped, crashing at start, a bad config), it is a client of shifterd's sockets rather than
 * the daemon, and a daemon's command line that also runs one-shot checks is one mistake away
 * from a unit file that starts the wrong thing.
 */
import { Command, InvalidArgumentError } from 'commander';
import { VERSION_LINE } from '../../common/version.js';

export interface NodeCheckArgs {
  config?: string;
  socket?: string;
  adminSocket?: string;
  timeout: number;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('not a number of seconds above 0');
  return n;
}

export function nodeCheckProgram(): Command {
  return new Command('shifter-node-check')
    .description('Check that this node can run Shifter containers: one line per check, exit 0 only when all pass.')
    .version(VERSION_LINE, '--version', 'print the version and exit')
    .option('--config <file>', 'udiRoot.conf (default: $SHIFTER_UDIROOT_CONF, else /etc/shifter/udiRoot.conf)')
    .option('--socket <path>', "shifterd's launch socket (default: shifterdSocket from the config)")
    .option('--admin-socket <path>', "shifterd's admin socket (default: shifterd-admin.sock next to the launch socket)")
    .option('--timeout <seconds>', 'how long each check may wait for an answer', seconds, 10);
}
