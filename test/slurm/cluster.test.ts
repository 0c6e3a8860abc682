/**
 * The test Slurm itself: an ordinary user runs steps with srun and batch jobs with sbatch on the
 * single-node cluster test/helpers/slurm.ts starts, as the Slurm tests after this one need.
 */
import test from 'ava';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
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
