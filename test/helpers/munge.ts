/**
 * A private munged for one test file: its own key, socket, seed and pid file in a mkdtemp dir.
 * munged insists on a key dir that only its owner can read and a socket dir others can traverse.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, mkdir, chmod, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Munged {
  socket: string;
  stop(): Promise<void>;
}

async function waitForSocket(path: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`munged exited with ${child.exitCode}: ${log()}`);
    try {
      await access(path);
      return;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`munged did not create ${path} within 10 s: ${log()}`);
}

export async function startMunged(): Promise<Munged> {
  const dir = await mkdtemp(join(tmpdir(), 'munged-'));
  await chmod(dir, 0o711);
  const etc = join(dir, 'etc');
  const run = join(dir, 'run');
  const lib = join(dir, 'lib');
  await mkdir(etc, { mode: 0o700 });
  await mkdir(lib, { mode: 0o700 });
  await mkdir(run, { mode: 0o755 });
  const key = join(etc, 'munge.key');
  execFileSync('mungekey', ['--create', '--keyfile', key], { stdio: 'ignore' });
  const socket = join(run, 'munge.socket');
  let log = '';
  const child = spawn(
    'munged',
    [
      '--foreground',
      '--socket',
      socket,
      '--key-file',
      key,
      '--log-file',
      join(dir, 'munged.log'),
      '--pid-file',
      join(run, 'munged.pid'),
      '--seed-file',
      join(lib, 'munged.seed'),
      '--num-threads',
      '2',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    log += d;
  });
  try {
    await waitForSocket(socket, child, () => log);
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    socket,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid, 'SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
