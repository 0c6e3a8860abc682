/**
 * shifter-node-check (bin/shifter-node-check): for admins, as root. Runs every check of a compute
 * node (node-checks.ts), prints one line each and exits 0 only when all pass (1 otherwise, 2 for
 * a bad command line).
 */
import { CommanderError } from 'commander';
import { dirname, join } from 'node:path';
import { readUdiRootConf, resolveUdiRootConfPath } from '../../common/config/udiroot-file.js';
import { parseUdiRootConf, type UdiRootConfig } from '../../common/config/udiroot-conf.js';
import { describeError } from '../../common/errors.js';
import { ADMIN_SOCKET_NAME, DEFAULT_SOCKET } from '../daemon-command-line.js';
import { exitCodeOf, failed, formatCheck, passed, type CheckResult } from './check-result.js';
import { nodeCheckProgram, type NodeCheckArgs } from './node-check-program.js';
import {
  checkAdminSocket,
  checkFuse,
  checkGateway,
  checkLaunchSocket,
  checkLoopDevices,
  checkMunge,
  checkSquashfs,
} from './node-checks.js';

/** The config, or a failed check and the defaults so that the checks that need none still run. */
async function loadConfig(path: string): Promise<{ config: UdiRootConfig; result: CheckResult }> {
  try {
    const { config, warnings } = await readUdiRootConf(path);
    const note = warnings.length === 0 ? 'read' : `read, ${warnings.length} warning(s): ${warnings[0].message}`;
    return { config, result: passed(`configuration ${path}`, note) };
  } catch (e) {
    return {
      config: parseUdiRootConf('', path).config,
      result: failed(`configuration ${path}`, describeError(e), 'fix the file (see udiRoot.conf(5))'),
    };
  }
}

async function main(): Promise<number> {
  const program = nodeCheckProgram()
    .exitOverride()
    .configureOutput({ outputError: (s, write) => write(`shifter-node-check: ${s.replace(/^error: /, '')}`) });
  program.parse(process.argv.slice(2), { from: 'user' });
  const args = program.opts<NodeCheckArgs>();
  const timeoutMs = args.timeout * 1000;
  const { config, result } = await loadConfig(resolveUdiRootConfPath(args.config));
  const socket = args.socket ?? config.shifterdSocket ?? DEFAULT_SOCKET;
  const adminSocket = args.adminSocket ?? join(dirname(socket), ADMIN_SOCKET_NAME);
  const checks: Array<Promise<CheckResult>> = [
    Promise.resolve(result),
    checkLaunchSocket(socket, timeoutMs),
    checkAdminSocket(adminSocket, timeoutMs),
    checkGateway(config, timeoutMs),
    checkMunge(config),
    checkLoopDevices(),
    checkSquashfs(),
    ...(config.lazyImageCache === undefined ? [] : [checkFuse(config)]),
  ];
  const results = await Promise.all(checks);
  for (const r of results) process.stdout.write(`${formatCheck(r)}\n`);
  return exitCodeOf(results);
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    process.stderr.write(`shifter-node-check: ${describeError(e)}\n`);
    process.exit(1);
  },
);
