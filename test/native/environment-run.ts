/** Test users and running commands inside a created environment, as root or as its user. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import type { Environment } from '../../node-daemon/adapters/index.js';

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

export function ensureUser(name: string): TestUser {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['-M', '-s', '/usr/sbin/nologin', name]);
  }
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { name, uid, gid };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

/**
 * Runs argv inside an environment through nsenter: as root from the host (root is unmapped
 * there: it shows as 65534), or, with `as`, as that real unprivileged user joining their own
 * environment the way the launcher does.
 */
export function runInside(env: Environment, argv: string[], as?: TestUser): Promise<RunResult> {
  const enter = ['nsenter', '--preserve-credentials', '--user=/proc/self/fd/3', '--mount=/proc/self/fd/4', ...argv];
  const cmd = as ? ['setpriv', `--reuid=${as.uid}`, `--regid=${as.gid}`, '--clear-groups', '--', ...enter] : enter;
  return collectOutput(spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe', env.userNsFd, env.mntNsFd] }));
}

/** Waits for a child spawned with piped stdout/stderr and returns what it printed. */
export function collectOutput(child: ChildProcess): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr, pid: child.pid! }));
  });
}
