/**
 * The job's environment on the node: the prolog (shifter_spank.so -> shifter-job-env ->
 * shifterd's admin API) prepares it once for the job's user and pinned image, every rank of
 * `srun shifter` attaches to it, and the epilog releases it so that no environment, mount or
 * loop device of the job is left. A prolog that cannot reach shifterd does not drain the node.
 */
import test from 'ava';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../../node-daemon/admin-server.js';
import { LAUNCHER, loopDevicesFor } from '../node-daemon/runtime-fixture.js';
import { SlurmStack } from './stack-fixture.js';

const stack = new SlurmStack();

test.before(async () => {
  await stack.start();
});

test.after.always(async () => {
  await stack.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function environmentsFor(imageId: string): Promise<number> {
  const Ctor = shifterdServiceClient(loadShifterdProto());
  const client = new Ctor(`unix://${stack.fx.adminSocket}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;
  try {
    const res = await new Promise<{ environments: Array<{ imageId: string }> }>((resolve, reject) =>
      client.ListEnvironments!({}, (err, r) => (err ? reject(err) : resolve(r as { environments: [] }))),
    );
    return res.environments.filter((e) => e.imageId === imageId).length;
  } finally {
    client.close();
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(250);
  }
  throw new Error(`${what} within ${timeoutMs} ms`);
}

test.serial('4 ranks attach to the one environment the prolog prepared; the epilog leaves nothing', async (t) => {
  const id = await stack.pullApp();
  const squashfs = join(stack.fx.imagePath, `${id}.squashfs`);
  const createdBefore = stack.fx.log.split('"environment created"').length;
  const script = [
    '#!/bin/sh',
    `srun -n 4 -O ${LAUNCHER} -v sh -c 'echo "rank $SLURM_PROCID: $(cat /etc/os-release)"'`,
    '',
  ].join('\n');
  const r = await stack.sbatch(['-n', '4', '-O', '--image=team/app:1', '-o', join(stack.work, 'ranks-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId);
  const out = await readFile(join(stack.work, `ranks-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  const ranks = out
    .split('\n')
    .filter((l) => l.startsWith('rank '))
    .sort();
  t.deepEqual(
    ranks,
    [0, 1, 2, 3].map((i) => `rank ${i}: PRETTY_NAME="app v1"`),
  );
  const notices = out.split('\n').filter((l) => l.startsWith('shifter: image '));
  t.is(notices.length, 4, out);
  for (const n of notices) t.regex(n, new RegExp(`is ${id}; environment reused;`));
  t.is(stack.fx.log.split('"environment created"').length - createdBefore, 1, 'one environment built for the job');
  t.regex(await stack.slurm!.slurmdLog(), new RegExp(`shifter: job ${jobId}: environment for id:${id} prepared`));

  await waitFor('the epilog did not release the environment', async () =>
    (await stack.slurm!.slurmdLog()).includes(`shifter: job ${jobId}: environment released`),
  );
  t.is(await environmentsFor(id), 0);
  await waitFor('the image loop device stayed attached', async () => loopDevicesFor(squashfs).length === 0);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  t.false(mountinfo.includes(id), 'no mount of the image on the host');
});

test.serial('shifterd down at the prolog: the job fails with the reason, the node stays usable', async (t) => {
  await stack.fx.stop();
  try {
    const script = `#!/bin/sh\n${LAUNCHER} cat /etc/os-release\n`;
    const r = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'down-%j.out')], script);
    t.is(r.code, 0, r.stderr);
    const jobId = r.stdout.trim();
    const job = await stack.slurm!.waitForJob(jobId);
    t.is(job.state, 'FAILED');
    t.regex(await readFile(join(stack.work, `down-${jobId}.out`), 'utf8'), /^shifter: .*shifterd/m);
    t.regex(
      await stack.slurm!.slurmdLog(),
      new RegExp(`shifter: job ${jobId}: prepare failed .*shifterd is not answering`),
    );
    const sinfo = await stack.slurm!.run('sinfo', ['-h', '-N', '-o', '%T']);
    t.is(sinfo.stdout.trim(), 'idle');
  } finally {
    await stack.fx.start();
  }
  const script = `#!/bin/sh\n${LAUNCHER} cat /etc/os-release\n`;
  const again = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'again-%j.out')], script);
  const job = await stack.slurm!.waitForJob(again.stdout.trim());
  t.is(job.state, 'COMPLETED');
  t.is(await readFile(join(stack.work, `again-${again.stdout.trim()}.out`), 'utf8'), 'PRETTY_NAME="app v1"\n');
});
