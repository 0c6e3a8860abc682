/**
 * `srun --image=X CMD` without the `shifter` prefix: the plugin's task hook asks shifterd for the
 * launch from each task's own process (after Slurm made it the user's), enters the environment
 * and gives Slurm the container's environment, so Slurm's own exec runs CMD in the image. Inside
 * an `sbatch --image` job, srun's `--image` naming the job's image keeps the job's pin and its
 * prepared environment; steps without `--image` on srun stay on the host, and `srun shifter`
 * is left to the launcher.
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

const srun = (args: string[]) =>
  stack.slurm!.run('srun', args, { user: stack.user, cwd: stack.work, env: stack.jobEnv() });

const lines = (text: string) => text.split('\n').filter((l) => l !== '');

/** The node's state once the step's epilog is over ("completing" until then); "drained" would stay. */
async function nodeStateAfterStep(): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const state = (await stack.slurm!.run('sinfo', ['-h', '-N', '-o', '%T'])).stdout.trim();
    if (state !== 'completing' || Date.now() > deadline) return state;
    await new Promise((r) => setTimeout(r, 250));
  }
}

test.serial(
  'srun --image runs each task in the image, as the user, in its directory, with the image PATH',
  async (t) => {
    const id = await stack.pullApp();
    const r = await srun([
      '-n',
      '2',
      '-O',
      '--image=team/app:1',
      'sh',
      '-c',
      'echo "$SLURM_PROCID $(cat /etc/os-release) uid=$(id -u) cwd=$(pwd) path=$PATH image=$SHIFTER_IMAGE"',
    ]);
    t.is(r.code, 0, r.stderr);
    t.deepEqual(
      lines(r.stdout).sort(),
      [0, 1].map(
        (rank) => `${rank} PRETTY_NAME="app v1" uid=${stack.user.uid} cwd=${stack.work} path=/bin image=${id}`,
      ),
    );
    t.false(r.stdout.includes('SHIFTER_SRUN_ENTER'), 'the marker does not reach the task');
  },
);

test.serial('a command the image lacks: exit 127 with one clear line, and the node runs the next step', async (t) => {
  const r = await srun(['-n', '1', '--image=team/app:1', 'no-such-command']);
  t.is(r.code, 127, r.stdout + r.stderr);
  t.regex(r.stderr, /^shifter: no-such-command: command not found in the image$/m);
  t.is(await nodeStateAfterStep(), 'idle');
  const next = await srun(['-n', '1', '--image=team/app:1', 'cat', '/etc/os-release']);
  t.is(next.code, 0, next.stderr);
  t.is(next.stdout, 'PRETTY_NAME="app v1"\n');
});

test.serial('shifterd down: srun --image fails the step with the reason; nothing runs on the host', async (t) => {
  await stack.fx.stop();
  try {
    const r = await srun(['-n', '1', '--image=team/app:1', 'sh', '-c', 'echo ran on the host']);
    t.is(r.code, 1, r.stdout + r.stderr);
    t.regex(r.stderr, /shifter: cannot connect to shifterd at .*\(is shifterd running\?\)/);
    t.false(r.stdout.includes('ran on the host'));
  } finally {
    await stack.fx.start();
  }
});

test.serial(
  'in an sbatch --image job: srun --image attaches to the job environment, other steps as before',
  async (t) => {
    const id = await stack.pullApp();
    const createdBefore = stack.fx.log.split('"environment created"').length;
    const script = [
      '#!/bin/sh',
      'echo "host: $(srun -n 1 head -n 1 /etc/os-release)"',
      `echo "launcher: $(srun -n 1 ${LAUNCHER} cat /etc/os-release)"`,
      `echo "launcher with --image: $(srun -n 1 --image=team/app:1 ${LAUNCHER} cat /etc/os-release)"`,
      `srun -n 2 --image=team/app:1 sh -c 'echo "image $SLURM_PROCID: $(cat /etc/os-release) $SHIFTER_IMAGE"'`,
      '',
    ].join('\n');
    const r = await stack.sbatch(
      ['-n', '2', '-O', '--image=team/app:1', '-o', join(stack.work, 'steps-%j.out')],
      script,
    );
    t.is(r.code, 0, r.stderr);
    const jobId = r.stdout.trim();
    const job = await stack.slurm!.waitForJob(jobId);
    const out = await readFile(join(stack.work, `steps-${jobId}.out`), 'utf8');
    t.is(job.state, 'COMPLETED', out);
    // Slurm's own notes ("srun: Step created ...") while the previous step completes are not the job's output.
    t.deepEqual(
      lines(out)
        .filter((l) => !l.startsWith('srun: '))
        .sort(),
      [
        `host: ${lines(await readFile('/etc/os-release', 'utf8'))[0]}`,
        `image 0: PRETTY_NAME="app v1" ${id}`,
        `image 1: PRETTY_NAME="app v1" ${id}`,
        'launcher with --image: PRETTY_NAME="app v1"',
        'launcher: PRETTY_NAME="app v1"',
      ],
    );
    t.is(stack.fx.log.split('"environment created"').length - createdBefore, 1, "one environment, the prolog's");
  },
);
