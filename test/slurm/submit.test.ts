/**
 * Submit-time checks and image pinning with every part real: a registry, the gateway, shifterd,
 * the single-node Slurm and shifter_spank.so. A job asks for an image once (`sbatch --image`,
 * `srun --image`); the plugin's job check resolves it to `id:<hex>` through the gateway and the
 * job's `shifter` (no --image) runs exactly that id, even after the tag moved. Bad options and
 * missing images fail the submit command itself, with shifter's message, and queue nothing.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LAUNCHER } from '../node-daemon/runtime-fixture.js';
import { SlurmStack } from './stack-fixture.js';

const stack = new SlurmStack();

test.before(async () => {
  await stack.start();
});

test.after.always(async () => {
  await stack.stop();
});

test.serial('sbatch --image: the job runs shifter in the image, pinned to the id the gateway gave', async (t) => {
  const id = await stack.pullApp();
  const script = [
    '#!/bin/sh',
    `${LAUNCHER} cat /etc/os-release`,
    'echo "$SHIFTER_IMAGETYPE:$SHIFTER_IMAGE $SHIFTER_IMAGEREQUEST"',
    '',
  ].join('\n');
  const r = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'good-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId);
  const out = await readFile(join(stack.work, `good-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, `PRETTY_NAME="app v1"\nid:${id} team/app:1\n`);
});

test.serial('srun --image outside an allocation: every task gets the pinned image', async (t) => {
  const id = await stack.pullApp();
  const r = await stack.slurm!.run(
    'srun',
    ['-n', '2', '--image=docker:team/app:1', LAUNCHER, 'sh', '-c', 'cat /etc/os-release; echo $SHIFTER_IMAGE'],
    {
      user: stack.user,
      cwd: stack.work,
      env: stack.jobEnv(),
    },
  );
  t.is(r.code, 0, r.stderr);
  t.deepEqual(
    r.stdout
      .split('\n')
      .filter((l) => l !== '')
      .sort(),
    ['PRETTY_NAME="app v1"', 'PRETTY_NAME="app v1"', id, id].sort(),
  );
});

test.serial('a missing image fails sbatch with the shifterimg pull command, and no job is queued', async (t) => {
  const before = await stack.jobCount();
  const r = await stack.sbatch(['--image=team/missing:2'], '#!/bin/sh\ntrue\n');
  t.not(r.code, 0);
  t.regex(
    r.stderr,
    /shifter: image not found: docker:team\/missing:2 .*; run `shifterimg pull docker:team\/missing:2`/,
  );
  t.is(await stack.jobCount(), before);
});

test.serial('a bad volume fails sbatch with the message shifter prints for it, and no job is queued', async (t) => {
  const before = await stack.jobCount();
  const r = await stack.sbatch(['--image=team/app:1', '--volume=/tmp:/etc/data'], '#!/bin/sh\ntrue\n');
  t.not(r.code, 0);
  const direct = await stack.fx.run(['--image=team/app:1', '--volume=/tmp:/etc/data', 'true']);
  t.is(direct.code, 1);
  t.regex(direct.stderr, /^shifter: volume '\/tmp:\/etc\/data': the target \/etc\/data would hide \/etc/);
  t.true(r.stderr.includes(direct.stderr), r.stderr);
  const noImage = await stack.sbatch(['--volume=/tmp:/data'], '#!/bin/sh\ntrue\n');
  t.not(noImage.code, 0);
  t.regex(noImage.stderr, /shifter: --volume needs --image: add --image=NAME:TAG to the job/);
  const badModule = await stack.sbatch(['--image=team/app:1', '--module=nosuch'], '#!/bin/sh\ntrue\n');
  t.not(badModule.code, 0);
  t.regex(badModule.stderr, /shifter: module 'nosuch' is not configured on this system/);
  t.is(await stack.jobCount(), before);
});

test.serial('a tag moved to another image after submit: the job still runs the id pinned at submit', async (t) => {
  const pinned = await stack.pullApp();
  // Also through srun: steps see the job's options again and must not pin the tag anew.
  const script = [
    '#!/bin/sh',
    `${LAUNCHER} cat /etc/os-release`,
    `srun -n 1 ${LAUNCHER} cat /etc/os-release`,
    'srun -n 1 --image=team/app:1 cat /etc/os-release',
    'echo "$SHIFTER_IMAGE"',
    '',
  ].join('\n');
  const r = await stack.sbatch(['--hold', '--image=team/app:1', '-o', join(stack.work, 'pinned-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  await stack.pushRelease('v2');
  const moved = await stack.pullApp(pinned);
  t.not(moved, pinned);
  const release = await stack.slurm!.run('scontrol', ['release', jobId]);
  t.is(release.code, 0, release.stderr);
  const job = await stack.slurm!.waitForJob(jobId);
  const out = await readFile(join(stack.work, `pinned-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, `${'PRETTY_NAME="app v1"\n'.repeat(3)}${pinned}\n`);
  const fresh = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'fresh-%j.out')], script);
  t.is(fresh.code, 0, fresh.stderr);
  await stack.slurm!.waitForJob(fresh.stdout.trim());
  t.is(
    await readFile(join(stack.work, `fresh-${fresh.stdout.trim()}.out`), 'utf8'),
    `${'PRETTY_NAME="app v2"\n'.repeat(3)}${moved}\n`,
  );
});

test.serial('sbatch --export=NONE: shifter still finds the pinned image (SLURM_SPANK_SHIFTER_*)', async (t) => {
  const id = await stack.pullApp();
  // With --export=NONE the submit environment's SHIFTERD_SOCKET does not reach the job either.
  const launch = `SHIFTERD_SOCKET=${stack.fx.socket} ${LAUNCHER}`;
  const script = `#!/bin/sh\n${launch} sh -c 'cat /etc/os-release; echo $SHIFTER_IMAGE'\n`;
  const r = await stack.sbatch(
    ['--export=NONE', '--image=team/app:1', '-o', join(stack.work, 'noexport-%j.out')],
    script,
  );
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId);
  const out = await readFile(join(stack.work, `noexport-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  // The tag may have moved in an earlier test: the release is whatever the pinned id holds.
  t.regex(out, new RegExp(`^PRETTY_NAME="app v\\d"\n${id}\n$`));
});
