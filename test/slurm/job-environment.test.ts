/**
 * The job's environment on the node: the prolog (shifter_spank.so -> shifter-job-env ->
 * shifterd's admin API) prepares it once for the job's user and pinned image, every rank of
 * `srun shifter` attaches to it, and the epilog releases it so that no environment, mount or
 * loop device of the job is left. A prolog that cannot reach shifterd does not drain the node.
 */
import test from 'ava';
import { chmod, chown, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../../node-daemon/admin-server.js';
import { LAUNCHER, loopDevicesFor } from '../node-daemon/runtime-fixture.js';
import { SlurmStack } from './stack-fixture.js';
import { SLURM_NODE, ensureSlurmUser } from '../helpers/slurm.js';

const stack = new SlurmStack();

test.before(async () => {
  await stack.start();
});

test.after.always(async () => {
  await stack.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function listEnvironments(): Promise<Array<{ uid: number; imageId: string; holders: string[] }>> {
  const Ctor = shifterdServiceClient(loadShifterdProto());
  const client = new Ctor(`unix://${stack.fx.adminSocket}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void>;
  try {
    const res = await new Promise<{ environments: Array<{ uid: number; imageId: string; holders: string[] }> }>(
      (resolve, reject) =>
        client.ListEnvironments({}, (err, r) => (err ? reject(err) : resolve(r as { environments: [] }))),
    );
    return res.environments;
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
  t.is((await listEnvironments()).filter((e) => e.imageId === id).length, 0);
  await waitFor('the image loop device stayed attached', async () => loopDevicesFor(squashfs).length === 0);
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
  t.false(mountinfo.includes(id), 'no mount of the image on the host');
});

/** Pids of processes whose command line contains `marker`. */
async function processesWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmdline = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.replace(/\0/g, ' ').includes(marker)) pids.push(Number(name));
  }
  return pids;
}

test.serial('a process the job left inside its environment is killed by the epilog; nothing is left', async (t) => {
  const id = await stack.pullApp();
  const marker = `${600 + Math.floor(Math.random() * 1000)}`;
  // setsid: the process leaves the step's process tree, so Slurm's linuxproc tracking misses it.
  const script = `#!/bin/sh\n${LAUNCHER} sh -c 'setsid sleep ${marker} </dev/null >/dev/null 2>&1 &'\n`;
  const r = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'stray-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId);
  t.is(job.state, 'COMPLETED', await readFile(join(stack.work, `stray-${jobId}.out`), 'utf8'));
  await waitFor('the epilog did not release the environment', async () =>
    (await stack.slurm!.slurmdLog()).includes(`shifter: job ${jobId}: environment released`),
  );
  t.regex(await stack.slurm!.slurmdLog(), new RegExp(`shifter: job ${jobId}: environment released, \\d+ process`));
  await waitFor(
    'the stray process is still running',
    async () => (await processesWith(`sleep ${marker}`)).length === 0,
  );
  const image = join(stack.fx.imagePath, `${id}.squashfs`);
  await waitFor('the image loop device stayed attached', async () => loopDevicesFor(image).length === 0);
  t.false((await readFile('/proc/self/mountinfo', 'utf8')).includes(id), 'no mount of the image on the host');
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
      new RegExp(`shifter: job ${jobId}: prepare failed .*shifterd is not answering.*; contact hpc-help@example\\.org`),
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

/** A job script that waits for `gate` to exist (so that jobs overlap), then runs `command` in shifter. */
const gatedScript = (gate: string, command: string) =>
  `#!/bin/sh\nwhile [ ! -e ${gate} ]; do sleep 0.2; done\n${LAUNCHER} -v ${command}\n`;

async function waitRunning(jobId: string): Promise<void> {
  await waitFor(`job ${jobId} did not start`, async () => {
    const r = await stack.slurm!.run('squeue', ['-h', '-j', jobId, '-o', '%T']);
    return r.stdout.trim() === 'RUNNING';
  });
}

test.serial('two jobs of one user have their own environments: the first epilog releases only its own', async (t) => {
  const id = await stack.pullApp();
  const gate = join(stack.work, 'gate-shared');
  const second = await stack.sbatch(
    ['--image=team/app:1', '-o', join(stack.work, 'second-%j.out')],
    gatedScript(gate, 'cat /etc/os-release /var/hostsfile'),
  );
  t.is(second.code, 0, second.stderr);
  const secondId = second.stdout.trim();
  await waitRunning(secondId);
  const first = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'first-%j.out')], '#!/bin/sh\ntrue\n');
  const firstId = first.stdout.trim();
  t.is((await stack.slurm!.waitForJob(firstId)).state, 'COMPLETED');
  await waitFor('the first epilog did not run', async () =>
    (await stack.slurm!.slurmdLog()).includes(`shifter: job ${firstId}: environment released`),
  );
  t.deepEqual(
    (await listEnvironments()).filter((e) => e.imageId === id).map((e) => e.holders),
    [[`slurm-job-${secondId}`]],
  );
  await writeFile(gate, '');
  t.is((await stack.slurm!.waitForJob(secondId)).state, 'COMPLETED');
  const out = await readFile(join(stack.work, `second-${secondId}.out`), 'utf8');
  t.regex(out, /environment reused;/);
  t.true(out.includes(`PRETTY_NAME="app v1"\n${SLURM_NODE}\n`), out);
  await waitFor('the second epilog did not release the environment', async () =>
    (await stack.slurm!.slurmdLog()).includes(`shifter: job ${secondId}: environment released`),
  );
  t.is((await listEnvironments()).filter((e) => e.imageId === id).length, 0);
});

test.serial('the job environment has /var/hostsfile, one line per CPU slot; a plain launch has none', async (t) => {
  await stack.pullApp();
  const script = [
    '#!/bin/sh',
    `srun -n 1 ${LAUNCHER} cat /var/hostsfile`,
    `env -u SLURM_JOB_ID ${LAUNCHER} sh -c 'test -e /var/hostsfile && echo plain has one || echo plain has none'`,
    '',
  ].join('\n');
  const r = await stack.sbatch(['-n', '2', '--image=team/app:1', '-o', join(stack.work, 'hosts-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId);
  const out = await readFile(join(stack.work, `hosts-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, `${SLURM_NODE}\n${SLURM_NODE}\nplain has none\n`);
});

test.serial("two users' jobs on one node get two environments, each with its own identity", async (t) => {
  const id = await stack.pullApp();
  const other = ensureSlurmUser('shifterslurm2');
  const otherWork = await mkdtemp(join(tmpdir(), 'slurm-other-'));
  try {
    await chown(otherWork, other.uid, other.gid);
    const gateDir = await mkdtemp(join(tmpdir(), 'slurm-gate-'));
    await chmod(gateDir, 0o755);
    const gate = join(gateDir, 'open');
    const mine = await stack.sbatch(
      ['--image=team/app:1', '-o', join(stack.work, 'mine-%j.out')],
      gatedScript(gate, 'id -u'),
    );
    t.is(mine.code, 0, mine.stderr);
    const theirs = await stack.slurm!.run(
      'sbatch',
      ['--parsable', '--image=team/app:1', '-o', join(otherWork, 'theirs-%j.out')],
      {
        user: other,
        cwd: otherWork,
        env: stack.jobEnv(),
        stdin: gatedScript(gate, 'id -u'),
      },
    );
    t.is(theirs.code, 0, theirs.stderr);
    const [mineId, theirsId] = [mine.stdout.trim(), theirs.stdout.trim()];
    for (const jobId of [mineId, theirsId]) {
      await waitFor(`the prolog of job ${jobId} did not prepare`, async () =>
        (await stack.slurm!.slurmdLog()).includes(`shifter: job ${jobId}: environment for id:${id}`),
      );
    }
    const uids = (await listEnvironments())
      .filter(
        (e) => e.imageId === id && e.holders.some((h) => h === `slurm-job-${mineId}` || h === `slurm-job-${theirsId}`),
      )
      .map((e) => e.uid)
      .sort();
    t.deepEqual(uids, [stack.user.uid, other.uid].sort());
    await writeFile(gate, '');
    const mineOut = join(stack.work, `mine-${mineId}.out`);
    const theirsOut = join(otherWork, `theirs-${theirsId}.out`);
    t.is((await stack.slurm!.waitForJob(mineId)).state, 'COMPLETED', await readFile(mineOut, 'utf8'));
    t.is((await stack.slurm!.waitForJob(theirsId)).state, 'COMPLETED', await readFile(theirsOut, 'utf8'));
    t.regex(await readFile(mineOut, 'utf8'), new RegExp(`^${stack.user.uid}$`, 'm'));
    t.regex(await readFile(theirsOut, 'utf8'), new RegExp(`^${other.uid}$`, 'm'));
    await rm(gateDir, { recursive: true, force: true });
  } finally {
    await rm(otherWork, { recursive: true, force: true });
  }
});

test.serial('shifterd killed during a job and restarted: the job goes on, the node serves the next job', async (t) => {
  const gateDir = await mkdtemp(join(tmpdir(), 'slurm-gate-'));
  await chmod(gateDir, 0o755);
  const gate = join(gateDir, 'open');
  try {
    const r = await stack.sbatch(
      ['--image=team/app:1', '-o', join(stack.work, 'killed-%j.out')],
      gatedScript(gate, 'cat /etc/os-release'),
    );
    t.is(r.code, 0, r.stderr);
    const jobId = r.stdout.trim();
    await waitFor(`the prolog of job ${jobId} did not prepare`, async () =>
      (await stack.slurm!.slurmdLog()).includes(`shifter: job ${jobId}: environment for id:`),
    );
    await stack.fx.stop('SIGKILL');
    await stack.fx.start();
    await writeFile(gate, '');
    const job = await stack.slurm!.waitForJob(jobId);
    const out = await readFile(join(stack.work, `killed-${jobId}.out`), 'utf8');
    t.is(job.state, 'COMPLETED', out);
    t.regex(out, /PRETTY_NAME="app v1"/);
    const next = await stack.sbatch(
      ['--image=team/app:1', '-o', join(stack.work, 'next-%j.out')],
      gatedScript(gate, 'true'),
    );
    const nextJob = await stack.slurm!.waitForJob(next.stdout.trim());
    const nextOut = await readFile(join(stack.work, `next-${next.stdout.trim()}.out`), 'utf8');
    t.is(nextJob.state, 'COMPLETED', nextOut);
    t.regex(nextOut, /environment reused;/);
    const sinfo = await stack.slurm!.run('sinfo', ['-h', '-N', '-o', '%T']);
    t.is(sinfo.stdout.trim(), 'idle');
  } finally {
    await rm(gateDir, { recursive: true, force: true });
  }
});

test.serial(
  'shifterd restarted during a job: the hold comes back with the hostsfile; the epilog ends the old one',
  async (t) => {
    const gateDir = await mkdtemp(join(tmpdir(), 'slurm-gate-'));
    await chmod(gateDir, 0o755);
    const gate = join(gateDir, 'open');
    const marker = `${1600 + Math.floor(Math.random() * 1000)}`;
    try {
      const script = [
        '#!/bin/sh',
        `${LAUNCHER} sh -c 'setsid sleep ${marker} </dev/null >/dev/null 2>&1 &'`,
        `while [ ! -e ${gate} ]; do sleep 0.2; done`,
        `${LAUNCHER} -v cat /var/hostsfile`,
        '',
      ].join('\n');
      const r = await stack.sbatch(['--image=team/app:1', '-o', join(stack.work, 'restored-%j.out')], script);
      t.is(r.code, 0, r.stderr);
      const jobId = r.stdout.trim();
      await waitFor(
        'the job did not start its stray process',
        async () => (await processesWith(`sleep ${marker}`)).length === 1,
      );
      await stack.fx.stop('SIGKILL');
      await stack.fx.start();
      await waitFor('shifterd did not rebuild the held environment', async () =>
        (await listEnvironments()).some((e) => e.holders.includes(`slurm-job-${jobId}`)),
      );
      await writeFile(gate, '');
      const job = await stack.slurm!.waitForJob(jobId);
      const out = await readFile(join(stack.work, `restored-${jobId}.out`), 'utf8');
      t.is(job.state, 'COMPLETED', out);
      t.regex(out, /environment reused;/);
      t.regex(out, new RegExp(`^${SLURM_NODE}$`, 'm'), 'the job environment, with its hostsfile');
      await waitFor('the epilog did not release the environment', async () =>
        (await stack.slurm!.slurmdLog()).includes(`shifter: job ${jobId}: environment released`),
      );
      t.regex(
        await stack.slurm!.slurmdLog(),
        new RegExp(`shifter: job ${jobId}: environment released, [1-9]\\d* process`),
      );
      await waitFor(
        'the stray process in the old environment is still running',
        async () => (await processesWith(`sleep ${marker}`)).length === 0,
      );
    } finally {
      await rm(gateDir, { recursive: true, force: true });
    }
  },
);
