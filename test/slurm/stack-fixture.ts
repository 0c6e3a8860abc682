/**
 * Everything a Slurm job with an image needs, all real: a registry holding team/app:1, the
 * gateway that pulled it into shifterd's imagePath, shifterd, and the single-node Slurm with
 * shifter_spank.so in plugstack.conf. stop() ends exactly what start() started.
 */
import { existsSync, readFileSync } from 'node:fs';
import { chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startSlurm, type SlurmCluster, type SlurmUser } from '../helpers/slurm.js';
import { REPO, ShifterdFixture, TEST_USER, ensureTestUser } from '../node-daemon/runtime-fixture.js';

export const PLUGIN = join(REPO, 'native', 'build', 'shifter_spank.so');

export class SlurmStack {
  readonly fx = new ShifterdFixture();
  reg: RunningRegistry | undefined;
  gw: RunningGateway | undefined;
  slurm: SlurmCluster | undefined;
  user!: SlurmUser;
  /** A directory the job user owns: job cwd and output files. */
  work = '';

  async start(): Promise<void> {
    if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: install libslurm-dev and run npm run build`);
    this.user = { name: TEST_USER, ...ensureTestUser() };
    this.reg = await startRegistry();
    await this.pushRelease('v1');
    const { fx } = this;
    this.gw = await startGateway({
      dir: fx.dir,
      config: {
        CacheDirectory: `${fx.dir}/gw-cache`,
        ExpandDirectory: `${fx.dir}/gw-expand`,
        Authentication: 'mock',
        WorkerThreads: 1,
        // Short, so that a moved tag can be pulled again within a test.
        PullUpdateTimeout: 1,
        DefaultImageLocation: 'site',
        Locations: { site: { url: this.reg.url } },
        Platforms: { testsys: { accesstype: 'local', local: { imageDir: fx.imagePath }, admins: ['root'] } },
      },
    });
    await this.pullApp();
    fx.writeConfig([
      `imageGateway=${this.gw.url}`,
      'system=testsys',
      'defaultImageType=docker',
      `shifterdSocket=${fx.socket}`,
      'siteContact=hpc-help@example.org',
    ]);
    await fx.start();
    this.slurm = await startSlurm({ plugstack: [`required ${PLUGIN} shifter_config=${fx.configPath}`] });
    this.work = await mkdtemp(join(tmpdir(), 'slurm-stack-'));
    await chown(this.work, this.user.uid, this.user.gid);
  }

  /** Stops every part even when one of them fails to stop, then reports the first failure. */
  async stop(): Promise<void> {
    const steps = [
      () => this.slurm?.stop(),
      () => this.gw?.stop(),
      () => this.fx.cleanup(),
      () => this.reg?.stop(),
      () => (this.work !== '' ? rm(this.work, { recursive: true, force: true }) : undefined),
    ];
    const failures: unknown[] = [];
    for (const step of steps) await Promise.resolve(step()).catch((e: unknown) => failures.push(e));
    if (failures.length > 0) throw failures[0];
  }

  /** Pushes team/app:1 with /etc/os-release saying `release`. */
  async pushRelease(release: string): Promise<void> {
    const layer = gzipSync(
      await tarLayer([
        { name: 'bin', type: 'directory' },
        { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
        { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/sleep', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/true', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/id', type: 'symlink', linkname: 'busybox' },
        { name: 'etc/os-release', content: `PRETTY_NAME="app ${release}"\n` },
      ]),
    );
    await pushImage(this.reg!.url, 'team/app', '1', { layers: [layer], config: imageConfig({ Env: ['PATH=/bin'] }) });
  }

  /** Pulls team/app:1 through the gateway until it is READY with an id other than `notId`. */
  pullApp(notId?: string): Promise<string> {
    return this.pull('team/app:1', notId);
  }

  /** Pulls `name` through the gateway until it is READY with an id other than `notId`. */
  async pull(name: string, notId?: string): Promise<string> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await fetch(`${this.gw!.url}/api/pull/testsys/docker/${name}/`, {
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

  /** The job's environment: the launcher finds this test's shifterd through SHIFTERD_SOCKET. */
  jobEnv(): Record<string, string> {
    return { SHIFTERD_SOCKET: this.fx.socket, PATH: '/usr/bin:/bin' };
  }

  sbatch(args: string[], script: string) {
    return this.slurm!.run('sbatch', ['--parsable', ...args], {
      user: this.user,
      cwd: this.work,
      env: this.jobEnv(),
      stdin: script,
    });
  }

  async jobCount(): Promise<number> {
    const r = await this.slurm!.run('scontrol', ['-o', 'show', 'jobs']);
    return r.stdout.split('\n').filter((l) => l.startsWith('JobId=')).length;
  }
}
