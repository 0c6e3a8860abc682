/**
 * The test Slurm itself: an ordinary user runs steps with srun and batch jobs with sbatch on the
 * single-node cluster test/helpers/slurm.ts starts, as the Slurm tests after this one need.
 */
import test from 'ava';
import { chown, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSlurmUser, startSlurm, type SlurmCluster, type SlurmUser } from '../helpers/slurm.js';

let slurm: SlurmCluster;
let user: SlurmUser;
let work: string;

test.before(async () => {
  user = ensureSlurmUser('shifterslurm1');
  slurm = await startSlurm();
  work = await mkdtemp(join(tmpdir(), 'slurm-work-'));
  await chown(work, user.uid, user.gid);
});

test.after.always(async () => {
  await slurm?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

test.serial('an ordinary user runs a two-task step with srun', async (t) => {
  const r = await slurm.run('srun', ['-n', '2', 'hostname'], { user, cwd: work });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), [hostname(), hostname()]);
});

test.serial('an ordinary user submits a batch job and finds its output file', async (t) => {
  const script = '#!/bin/sh\n#SBATCH -n 1\necho "job $SLURM_JOB_ID ran as $(id -un)"\n';
  const r = await slurm.run('sbatch', ['--parsable', '-o', join(work, 'out-%j.txt')], {
    user,
    cwd: work,
    stdin: script,
  });
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  t.regex(jobId, /^\d+$/);
  const job = await slurm.waitForJob(jobId);
  t.is(job.state, 'COMPLETED');
  t.is(job.exitCode, '0:0');
  t.is(await readFile(join(work, `out-${jobId}.txt`), 'utf8'), `job ${jobId} ran as ${user.name}\n`);
});

test.serial('stop() leaves no process of the cluster behind, also with a job still running', async (t) => {
  const own = await startSlurm();
  const marker = `SLURM_CONF=${own.confPath}`;
  let stopped = false;
  try {
    const r = await own.run('sbatch', ['--parsable', '-o', '/dev/null'], {
      user,
      cwd: work,
      stdin: '#!/bin/sh\nwhile true; do sleep 1; done\n',
    });
    t.is(r.code, 0, r.stderr);
    const deadline = Date.now() + 30_000;
    while ((await own.run('squeue', ['-h', '-o', '%T'])).stdout.trim() !== 'RUNNING' && Date.now() < deadline) {
      await new Promise((res) => setTimeout(res, 250));
    }
    await own.stop();
    stopped = true;
    const left: number[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const environ = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
      const state = await readFile(`/proc/${name}/stat`, 'utf8').catch(() => '');
      if (environ.split('\0').includes(marker) && !/\) Z /.test(state)) left.push(Number(name));
    }
    t.deepEqual(left, []);
  } finally {
    if (!stopped) await own.stop();
  }
});
