/**
 * Submit-time checks and image pinning with every part real: a registry, the gateway, shifterd,
 * the single-node Slurm and shifter_spank.so. A job asks for an image once (`sbatch --image`,
 * `srun --image`); the plugin's job check resolves it to `id:<hex>` through the gateway and the
 * job's `shifter` (no --image) runs exactly that id, even after the tag moved. Bad options and
 * missing images fail the submit command itself, with shifter's message, and queue nothing.
 */
import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startSlurm, type SlurmCluster, type SlurmUser } from '../helpers/slurm.js';
import { LAUNCHER, REPO, ShifterdFixture, TEST_USER, ensureTestUser } from '../node-daemon/runtime-fixture.js';

const PLUGIN = join(REPO, 'native', 'build', 'shifter_spank.so');
const fx = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let gw: RunningGateway | undefined;
let slurm: SlurmCluster | undefined;
let user: SlurmUser;
let work: string;

async function pushRelease(release: string): Promise<void> {
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
      { name: 'etc/os-release', content: `PRETTY_NAME="app ${release}"\n` },
    ]),
  );
  await pushImage(reg!.url, 'team/app', '1', { layers: [layer], config: imageConfig({ Env: ['PATH=/bin'] }) });
}

/** Pulls team/app:1 through the gateway until it is READY with an id other than `notId`. */
async function pullApp(notId?: string): Promise<string> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const res = await fetch(`${gw!.url}/api/pull/testsys/docker/team/app:1/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authentication: 'good:alice:users::1000:100' },
      body: '{}',
    });
    const rec = (await res.json()) as { status?: string; id?: string };
    if (rec.status === 'READY' && rec.id !== undefined && rec.id !== notId) return rec.id;
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

test.before(async () => {
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: install libslurm-dev and run npm run build`);
  const ids = ensureTestUser();
  user = { name: TEST_USER, ...ids };
  reg = await startRegistry();
  await pushRelease('v1');
  gw = await startGateway({
    dir: fx.dir,
    config: {
      CacheDirectory: `${fx.dir}/gw-cache`,
      ExpandDirectory: `${fx.dir}/gw-expand`,
      Authentication: 'mock',
      WorkerThreads: 1,
      PullUpdateTimeout: 1,
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: { testsys: { accesstype: 'local', local: { imageDir: fx.imagePath }, admins: ['root'] } },
    },
  });
  await pullApp();
  fx.writeConfig([`imageGateway=${gw.url}`, 'system=testsys', 'defaultImageType=docker']);
  await fx.start();
  slurm = await startSlurm({ plugstack: [`required ${PLUGIN} shifter_config=${fx.configPath}`] });
  work = await mkdtemp(join(tmpdir(), 'slurm-submit-'));
  await chown(work, user.uid, user.gid);
});

test.after.always(async () => {
  await slurm?.stop();
  await gw?.stop();
  await fx.cleanup();
  await reg?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** The job's environment: the launcher finds this test's shifterd through SHIFTERD_SOCKET. */
const jobEnv = () => ({ SHIFTERD_SOCKET: fx.socket, PATH: '/usr/bin:/bin' });

async function jobCount(): Promise<number> {
  const r = await slurm!.run('scontrol', ['-o', 'show', 'jobs']);
  return r.stdout.split('\n').filter((l) => l.startsWith('JobId=')).length;
}

async function sbatch(args: string[], script: string) {
  return slurm!.run('sbatch', ['--parsable', ...args], { user, cwd: work, env: jobEnv(), stdin: script });
}

test.serial('sbatch --image: the job runs shifter in the image, pinned to the id the gateway gave', async (t) => {
  const id = await pullApp();
  const script = [
    '#!/bin/sh',
    `${LAUNCHER} cat /etc/os-release`,
    'echo "$SHIFTER_IMAGETYPE:$SHIFTER_IMAGE $SHIFTER_IMAGEREQUEST"',
    '',
  ].join('\n');
  const r = await sbatch(['--image=team/app:1', '-o', join(work, 'good-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await slurm!.waitForJob(jobId);
  const out = await readFile(join(work, `good-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, `PRETTY_NAME="app v1"\nid:${id} team/app:1\n`);
});

test.serial('srun --image outside an allocation: every task gets the pinned image', async (t) => {
  const id = await pullApp();
  const r = await slurm!.run(
    'srun',
    ['-n', '2', '--image=docker:team/app:1', LAUNCHER, 'sh', '-c', 'cat /etc/os-release; echo $SHIFTER_IMAGE'],
    {
      user,
      cwd: work,
      env: jobEnv(),
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
  const before = await jobCount();
  const r = await sbatch(['--image=team/missing:2'], '#!/bin/sh\ntrue\n');
  t.not(r.code, 0);
  t.regex(
    r.stderr,
    /shifter: image not found: docker:team\/missing:2 .*; run `shifterimg pull docker:team\/missing:2`/,
  );
  t.is(await jobCount(), before);
});

test.serial('a bad volume fails sbatch with the message shifter prints for it, and no job is queued', async (t) => {
  const before = await jobCount();
  const r = await sbatch(['--image=team/app:1', '--volume=/tmp:/etc/data'], '#!/bin/sh\ntrue\n');
  t.not(r.code, 0);
  const direct = await fx.run(['--image=team/app:1', '--volume=/tmp:/etc/data', 'true']);
  t.is(direct.code, 1);
  t.regex(direct.stderr, /^shifter: volume '\/tmp:\/etc\/data': the target \/etc\/data would hide \/etc/);
  t.true(r.stderr.includes(direct.stderr), r.stderr);
  const noImage = await sbatch(['--volume=/tmp:/data'], '#!/bin/sh\ntrue\n');
  t.not(noImage.code, 0);
  t.regex(noImage.stderr, /shifter: --volume needs --image: add --image=NAME:TAG to the job/);
  const badModule = await sbatch(['--image=team/app:1', '--module=nosuch'], '#!/bin/sh\ntrue\n');
  t.not(badModule.code, 0);
  t.regex(badModule.stderr, /shifter: module 'nosuch' is not configured on this system/);
  t.is(await jobCount(), before);
});

test.serial('a tag moved to another image after submit: the job still runs the id pinned at submit', async (t) => {
  const pinned = await pullApp();
  const script = `#!/bin/sh\n${LAUNCHER} cat /etc/os-release\necho "$SHIFTER_IMAGE"\n`;
  const r = await sbatch(['--hold', '--image=team/app:1', '-o', join(work, 'pinned-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  await pushRelease('v2');
  const moved = await pullApp(pinned);
  t.not(moved, pinned);
  const release = await slurm!.run('scontrol', ['release', jobId]);
  t.is(release.code, 0, release.stderr);
  const job = await slurm!.waitForJob(jobId);
  const out = await readFile(join(work, `pinned-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, `PRETTY_NAME="app v1"\n${pinned}\n`);
  const fresh = await sbatch(['--image=team/app:1', '-o', join(work, 'fresh-%j.out')], script);
  t.is(fresh.code, 0, fresh.stderr);
  await slurm!.waitForJob(fresh.stdout.trim());
  t.is(await readFile(join(work, `fresh-${fresh.stdout.trim()}.out`), 'utf8'), `PRETTY_NAME="app v2"\n${moved}\n`);
});
