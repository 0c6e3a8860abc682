/**
 * A real single-node Slurm for one test file: munged (test/helpers/munge.ts), `slurmctld -D` and
 * `slurmd -D` from Debian's slurm-wlm with their own slurm.conf, loopback ports, state, spool
 * and log dirs in one mkdtemp dir. Client commands find this cluster through SLURM_CONF (see
 * `env`). ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need no cgroups or systemd.
 * stop() cancels the cluster's jobs, then ends exactly the daemons this started, by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { startMunged, type Munged } from './munge.js';
import { freePort } from './registry.js';

export const SLURM_NODE = 'localhost';

export interface SlurmUser {
  name: string;
  uid: number;
  gid: number;
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Run as this user (setpriv with their groups) instead of root. */
  user?: SlurmUser;
  cwd?: string;
  env?: Record<string, string>;
  /** Written to the command's stdin (e.g. a batch script for sbatch). */
  stdin?: string;
  timeoutMs?: number;
}

export interface JobInfo {
  state: string;
  /** `ExitCode=a:b` of scontrol: the batch script's status and the signal. */
  exitCode: string;
  fields: Record<string, string>;
}

export interface StartSlurmOptions {
  /** Lines of plugstack.conf (e.g. `required /path/shifter_spank.so shifter_config=...`). */
  plugstack?: readonly string[];
  /** Extra slurm.conf lines, appended after the defaults. */
  extraConfig?: readonly string[];
}

export interface SlurmCluster {
  dir: string;
  confPath: string;
  plugstackPath: string;
  /** What client commands need to reach this cluster. */
  env: Record<string, string>;
  munge: Munged;
  run(command: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
  /** Polls scontrol until the job has ended (no `sbatch --wait`: it hangs on this setup). */
  waitForJob(jobId: string, timeoutMs?: number): Promise<JobInfo>;
  /** slurmd reads plugstack.conf only at start. */
  restartSlurmd(): Promise<void>;
  slurmdLog(): Promise<string>;
  stop(): Promise<void>;
}

/** Creates `name` (no home, no login shell) if it does not exist yet. */
export function ensureSlurmUser(name: string): SlurmUser {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['-M', '-s', '/usr/sbin/nologin', name]);
  }
  const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
  return { name, uid, gid };
}

function runCommand(
  command: string,
  args: readonly string[],
  opts: RunOptions,
  baseEnv: Record<string, string>,
): Promise<CommandResult> {
  const argv = opts.user
    ? ['setpriv', `--reuid=${opts.user.uid}`, `--regid=${opts.user.gid}`, '--init-groups', '--', command, ...args]
    : [command, ...args];
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...baseEnv, ...opts.env };
  if (opts.user) Object.assign(env, { USER: opts.user.name, LOGNAME: opts.user.name, HOME: opts.cwd ?? '/' });
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.stdin ?? '');
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (!alive(child) || child.pid === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid, 'SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
  if (alive(child)) {
    process.kill(child.pid, 'SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
}

/**
 * slurmstepd daemonizes, so a job that outlived scancel (e.g. a test that failed mid-job) is no
 * child of ours: find the step daemons of this cluster by the SLURM_CONF slurmd gave them, and
 * kill them with every process below them.
 */
async function killStrayJobs(confPath: string): Promise<void> {
  const marker = `SLURM_CONF=${confPath}`;
  const parents = new Map<number, number>();
  const stepds: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      parents.set(pid, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
      if (!stat.includes('(slurmstepd)')) continue;
      const environ = (await readFile(`/proc/${pid}/environ`, 'utf8')).split('\0');
      if (environ.includes(marker)) stepds.push(pid);
    } catch {
      // the process ended while we looked
    }
  }
  const doomed = new Set(stepds);
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, ppid] of parents) {
      if (!doomed.has(pid) && doomed.has(ppid)) {
        doomed.add(pid);
        grew = true;
      }
    }
  }
  for (const pid of doomed) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** `Key=Value Key=Value` as `scontrol -o show` prints it. */
export function parseScontrolLine(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of line.trim().matchAll(/(\S+?)=(\S*)/g)) out[m[1]] = m[2]!;
  return out;
}

const ENDED = new Set([
  'COMPLETED',
  'FAILED',
  'CANCELLED',
  'TIMEOUT',
  'NODE_FAIL',
  'OUT_OF_MEMORY',
  'BOOT_FAIL',
  'DEADLINE',
  'PREEMPTED',
]);

export async function startSlurm(opts: StartSlurmOptions = {}): Promise<SlurmCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'slurm-'));
  await chmod(dir, 0o755);
  const munge = await startMunged();
  const children: ChildProcess[] = [];
  const logs = { slurmctld: '', slurmd: '' };
  const confPath = join(dir, 'slurm.conf');
  const plugstackPath = join(dir, 'plugstack.conf');
  const env = { SLURM_CONF: confPath };
  const slurmdLogPath = join(dir, 'slurmd.log');

  const spawnDaemon = (name: 'slurmctld' | 'slurmd', args: string[]): ChildProcess => {
    const child = spawn(name, args, {
      env: { PATH: process.env.PATH, SLURM_CONF: confPath },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      logs[name] = (logs[name] + d).slice(-20_000);
    });
    children.push(child);
    return child;
  };
  const startSlurmd = () => spawnDaemon('slurmd', ['-D', '-N', SLURM_NODE, '-f', confPath]);

  const run = (command: string, args: readonly string[], o: RunOptions = {}) => runCommand(command, args, o, env);

  const waitForIdle = async (daemons: () => ChildProcess[]): Promise<void> => {
    const deadline = Date.now() + 60_000;
    let last = '';
    while (Date.now() < deadline) {
      for (const c of daemons()) {
        if (!alive(c))
          throw new Error(`${c.spawnfile} exited (${c.exitCode ?? c.signalCode}): ${logs.slurmctld}\n${logs.slurmd}`);
      }
      const r = await run('sinfo', ['-h', '-N', '-o', '%T'], { timeoutMs: 10_000 }).catch(() => undefined);
      last = r ? `${r.stdout.trim()}${r.stderr.trim()}` : last;
      if (r?.code === 0 && r.stdout.trim() === 'idle') return;
      await sleep(250);
    }
    throw new Error(
      `the Slurm node did not become idle within 60 s (sinfo: ${last}): ${logs.slurmctld}\n${logs.slurmd}`,
    );
  };

  const stopAll = async (): Promise<void> => {
    if (children.some(alive)) {
      const q = await run('squeue', ['-h', '-o', '%i'], { timeoutMs: 5_000 }).catch(() => undefined);
      const ids = (q?.stdout ?? '').split(/\s+/).filter((id) => /^\d+$/.test(id));
      if (ids.length > 0) await run('scancel', ids).catch(() => undefined);
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline) {
        const q = await run('squeue', ['-h', '-o', '%i'], { timeoutMs: 5_000 }).catch(() => undefined);
        if (!q || q.code !== 0 || q.stdout.trim() === '') break;
        await sleep(250);
      }
    }
    for (const c of [...children].reverse()) await stopChild(c);
    await killStrayJobs(confPath);
    await munge.stop();
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
    for (const d of ['state', 'spool', 'run']) await mkdir(join(dir, d), { mode: 0o755 });
    const memoryMb = Math.floor((totalmem() / 1024 / 1024) * 0.8);
    await writeFile(plugstackPath, (opts.plugstack ?? []).map((l) => `${l}\n`).join(''));
    await writeFile(
      confPath,
      [
        'ClusterName=shiftertest',
        `SlurmctldHost=${SLURM_NODE}(127.0.0.1)`,
        'SlurmUser=root',
        'SlurmdUser=root',
        `SlurmctldPort=${ctldPort}`,
        `SlurmdPort=${slurmdPort}`,
        'AuthType=auth/munge',
        'CredType=cred/munge',
        `AuthInfo=socket=${munge.socket}`,
        `StateSaveLocation=${join(dir, 'state')}`,
        `SlurmdSpoolDir=${join(dir, 'spool')}`,
        `SlurmctldPidFile=${join(dir, 'run', 'slurmctld.pid')}`,
        `SlurmdPidFile=${join(dir, 'run', 'slurmd.pid')}`,
        `SlurmctldLogFile=${join(dir, 'slurmctld.log')}`,
        `SlurmdLogFile=${slurmdLogPath}`,
        'SlurmdDebug=info',
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'PrologFlags=Alloc',
        'JobAcctGatherType=jobacct_gather/none',
        'AccountingStorageType=accounting_storage/none',
        'JobCompType=jobcomp/none',
        'SchedulerType=sched/backfill',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_CPU',
        'MpiDefault=none',
        'ReturnToService=2',
        'SwitchType=switch/none',
        `PlugStackConfig=${plugstackPath}`,
        'MinJobAge=600',
        'InactiveLimit=0',
        'KillWait=5',
        `NodeName=${SLURM_NODE} NodeAddr=127.0.0.1 CPUs=${cpus().length} RealMemory=${memoryMb} State=UNKNOWN`,
        `PartitionName=debug Nodes=${SLURM_NODE} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES`,
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    const ctld = spawnDaemon('slurmctld', ['-D', '-i', '-f', confPath]);
    let slurmd = startSlurmd();
    await waitForIdle(() => [ctld, slurmd]);

    return {
      dir,
      confPath,
      plugstackPath,
      env,
      munge,
      run,
      async waitForJob(jobId: string, timeoutMs = 120_000): Promise<JobInfo> {
        const deadline = Date.now() + timeoutMs;
        let last = '';
        while (Date.now() < deadline) {
          const r = await run('scontrol', ['-o', 'show', 'job', jobId], { timeoutMs: 10_000 });
          last = r.stdout + r.stderr;
          const fields = parseScontrolLine(r.stdout);
          const state = fields.JobState ?? '';
          if (ENDED.has(state)) return { state, exitCode: fields.ExitCode ?? '', fields };
          await sleep(300);
        }
        throw new Error(`job ${jobId} did not end within ${timeoutMs} ms: ${last}`);
      },
      async restartSlurmd(): Promise<void> {
        await stopChild(slurmd);
        children.splice(children.indexOf(slurmd), 1);
        slurmd = startSlurmd();
        await waitForIdle(() => [ctld, slurmd]);
      },
      async slurmdLog(): Promise<string> {
        return readFile(slurmdLogPath, 'utf8').catch(() => '');
      },
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
