/**
 * The real gateway and `shifterimg` against registries that fail: one that always answers 500
 * (its pull fails more slowly than PullUpdateTimeout) and one that accepts connections and never
 * answers (its pulls run into PullDeadline). What the user sees: the client ends with FAILURE and
 * exit 1, a stalled registry does not hold up a pull from a healthy one.
 */
import test from 'ava';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startShifterimg } from '../../cli/run-shifterimg.js';
import { startFaultyRegistry, type FaultyRegistry } from '../../helpers/faulty-registry.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';

const PULL_DEADLINE_SEC = 12;

let munged: Munged;
let registry: RunningRegistry;
let broken: FaultyRegistry;
let silent: FaultyRegistry;
let gateway: RunningGateway;
let dir: string;
let conf: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-faulty-'));
  await chmod(dir, 0o755);
  [munged, registry, broken, silent] = await Promise.all([
    startMunged(),
    startRegistry(),
    startFaultyRegistry('always-500'),
    startFaultyRegistry('silent'),
  ]);
  gateway = await startGateway({
    dir,
    timeoutMs: 60_000,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'munge',
      WorkerThreads: 2,
      PullUpdateTimeout: 2,
      PullDeadline: PULL_DEADLINE_SEC,
      DefaultImageLocation: registry.host,
      Locations: {
        [registry.host]: { url: registry.url },
        [broken.host]: { url: broken.url },
        [silent.host]: { url: silent.url },
      },
      Platforms: {
        sys: {
          accesstype: 'local',
          local: { imageDir: join(dir, 'images') },
          mungeSocketPath: munged.socket,
          admins: ['root'],
        },
      },
    },
  });
  conf = join(dir, 'udiRoot.conf');
  await writeFile(
    conf,
    [
      'system=sys',
      `imageGateway=${gateway.url}`,
      `mungeSocketPath=${munged.socket}`,
      'gatewayTimeout=30',
      'defaultImageType=docker',
      `imagePath=${join(dir, 'images')}`,
      '',
    ].join('\n'),
  );
});

test.after.always(async () => {
  await gateway?.stop();
  await Promise.all([registry?.stop(), broken?.stop(), silent?.stop(), munged?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs `shifterimg pull`, killing it after `limitMs` (a client that never ends is the bug). */
async function shifterimgPull(image: string, limitMs: number) {
  const run = startShifterimg(['--config', conf, 'pull', image]);
  const started = Date.now();
  const killer = setTimeout(() => run.child.kill('SIGKILL'), limitMs);
  const result = await run.done;
  clearTimeout(killer);
  return { ...result, ms: Date.now() - started, endedAt: Date.now() };
}

test.serial(
  'a pull that fails more slowly than PullUpdateTimeout is reported: shifterimg prints FAILURE and exits 1',
  async (t) => {
    // Five manifest attempts with back-off take about 7.5 s, well over PullUpdateTimeout (2 s).
    const r = await shifterimgPull(`${broken.host}/team/app:1`, 90_000);
    t.is(r.signal, null, `shifterimg never ended; the registry saw ${broken.requests.length} requests`);
    t.is(r.code, 1, r.stderr);
    t.regex(r.stdout, /status: FAILURE/);
    t.regex(
      r.stderr,
      /pull of docker:127\.0\.0\.1:\d+\/team\/app:1 failed: .*kept failing with HTTP 500 \(5 attempts\)/,
    );
    t.is(broken.requests.length, 5, 'one pull was queued, not one per poll');
  },
);

test.serial(
  "a silent registry fails its pulls within PullDeadline, one at a time, while a healthy registry's pull completes",
  async (t) => {
    const layer = gzipSync(await tarLayer([{ name: 'etc/ok', content: 'ok\n' }]));
    await pushImage(registry.url, 'team/ok', '1', { layers: [layer], config: imageConfig({}) });
    const stalledA = shifterimgPull(`${silent.host}/team/a:1`, 120_000);
    const stalledB = shifterimgPull(`${silent.host}/team/b:1`, 120_000);
    await new Promise((r) => setTimeout(r, 1500));
    const healthy = await shifterimgPull(`${registry.host}/team/ok:1`, 60_000);
    t.is(healthy.code, 0, healthy.stderr);
    const [a, b] = await Promise.all([stalledA, stalledB]);
    t.true(
      healthy.endedAt < Math.min(a.endedAt, b.endedAt),
      `the healthy pull took ${healthy.ms} ms: it waited for a stalled one to fail`,
    );
    for (const r of [a, b]) {
      t.is(r.code, 1, r.stderr);
      t.regex(
        r.stderr,
        new RegExp(`failed: the pull did not finish within ${PULL_DEADLINE_SEC} s \\(the site's PullDeadline\\)`),
      );
    }
    const [first, second] = [a.ms, b.ms].sort((x, y) => x - y) as [number, number];
    t.true(
      first >= PULL_DEADLINE_SEC * 1000 - 500 && first < PULL_DEADLINE_SEC * 1000 + 10_000,
      `first failed after ${first} ms`,
    );
    // RegistryConcurrency defaults to WorkerThreads - 1 = 1: the second waited for the first.
    t.true(second >= 2 * PULL_DEADLINE_SEC * 1000 - 1000, `second failed after ${second} ms`);
  },
);

test.serial(
  'shifterimg pull of a registry the site did not allow ends at once with the reason; nothing connects',
  async (t) => {
    const before = silent.connections;
    const r = await shifterimgPull(`localhost:${silent.port}/team/a:1`, 30_000);
    t.is(r.code, 4, r.stderr);
    t.regex(
      r.stderr,
      new RegExp(`the image gateway refused the request: this gateway does not pull from localhost:${silent.port}; `),
    );
    t.is(silent.connections, before);
  },
);
