/**
 * Job-start fan-out with the real parts: the Slurm prolog (shifter_spank.so -> shifter-job-env ->
 * shifterd's admin API) of a job whose image is lazy on the node stages the image's recorded
 * profile before the job's first rank starts, so the job's reads fetch nothing; a gateway that
 * never answers the profile's chunks holds the prolog no longer than lazyPrologStageTimeout, the
 * job runs, and the chunks arrive in the background once the gateway answers.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { existsSync } from 'node:fs';
import { chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSlurm, type SlurmCluster, type SlurmUser } from '../../helpers/slurm.js';
import { PLUGIN } from '../../slurm/stack-fixture.js';
import { LAUNCHER, ShifterdFixture, TEST_USER, ensureTestUser } from '../runtime-fixture.js';
import { waitFor } from '../lazy/lazy-fixture.js';
import { LazyGatewayStack, OS_RELEASE, storedChunks } from '../lazy/lazy-gateway-fixture.js';

/** Passes everything to `upstream`, except chunk GETs of held digests: those wait for release(). */
interface HoldingProxy {
  url: string;
  hold(digests: readonly string[]): void;
  release(): void;
  close(): Promise<void>;
}

async function holdingProxy(upstream: string): Promise<HoldingProxy> {
  const held = new Set<string>();
  let waiting: (() => void)[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const headers = Object.fromEntries(
        Object.entries(req.headers).filter(([k, v]) => k !== 'host' && typeof v === 'string'),
      ) as Record<string, string>;
      const body = parts.length > 0 ? Buffer.concat(parts) : undefined;
      const forward = (): void => {
        fetch(new URL(req.url ?? '/', upstream), { method: req.method, headers, body }).then(
          async (up) => {
            const bytes = Buffer.from(await up.arrayBuffer());
            res.writeHead(up.status, {
              'content-type': up.headers.get('content-type') ?? 'application/octet-stream',
            });
            res.end(bytes);
          },
          () => res.writeHead(502).end(),
        );
      };
      const digest = /\/chunk\/([0-9a-f]{64})$/.exec(req.url ?? '')?.[1];
      if (req.method === 'GET' && digest !== undefined && held.has(digest)) waiting.push(forward);
      else forward();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    hold: (digests) => digests.forEach((d) => held.add(d)),
    release: () => {
      held.clear();
      const go = waiting;
      waiting = [];
      go.forEach((f) => f());
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const stack = new LazyGatewayStack();
const node = new ShifterdFixture();
const cacheDir = join(node.dir, 'lazycache');
let proxy: HoldingProxy | undefined;
let slurm: SlurmCluster | undefined;
let user: SlurmUser;
let work = '';

/** The node's udiRoot.conf: every image lazy, through the proxy; `stageLimit` for the prolog. */
function writeNodeConfig(stageLimit: number): void {
  node.writeConfig([
    ...stack.nodeConfig(proxy!.url, cacheDir),
    // Far longer than any stage limit below: a prolog that waited for chunks would show.
    'lazyChunkTimeout=90',
    `lazyPrologStageTimeout=${stageLimit}`,
    'defaultImageType=docker',
    `shifterdSocket=${node.socket}`,
  ]);
}

test.before(async () => {
  if (!existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: install libslurm-dev and run npm run build`);
  user = { name: TEST_USER, ...ensureTestUser() };
  await stack.start();
  proxy = await holdingProxy(stack.gw!.url);
  writeNodeConfig(60);
  await node.start();
  slurm = await startSlurm({ plugstack: [`required ${PLUGIN} shifter_config=${node.configPath}`] });
  work = await mkdtemp(join(tmpdir(), 'prolog-stage-'));
  await chown(work, user.uid, user.gid);
});

test.after.always(async () => {
  const steps = [
    () => slurm?.stop(),
    () => node.cleanup(),
    () => proxy?.close(),
    () => stack.stop(),
    () => (work !== '' ? rm(work, { recursive: true, force: true }) : undefined),
  ];
  for (const step of steps) await Promise.resolve(step()).catch(() => undefined);
});

/**
 * Submits a job running `cat /etc/os-release` in `image`: its batch script marks that it started
 * (the prolog is over), then waits for the test's go before the container starts.
 */
async function submit(image: string, name: string): Promise<{ jobId: string; submitted: number }> {
  const script = [
    '#!/bin/sh',
    `touch ${work}/${name}.started`,
    `while [ ! -e ${work}/${name}.go ]; do sleep 0.1; done`,
    `${LAUNCHER} cat /etc/os-release`,
    '',
  ].join('\n');
  const submitted = Date.now();
  const r = await slurm!.run('sbatch', ['--parsable', `--image=${image}`, '-o', join(work, `${name}.out`)], {
    user,
    cwd: work,
    env: { SHIFTERD_SOCKET: node.socket, PATH: '/usr/bin:/bin' },
    stdin: script,
  });
  if (r.code !== 0) throw new Error(`sbatch: ${r.stderr}`);
  return { jobId: r.stdout.trim(), submitted };
}

test.serial('the prolog stages the profile before the first rank: the job fetches no chunk', async (t) => {
  const app = await stack.pushAndPull('team/lazy', '1.0');
  // The first cold start anywhere (another node, straight to the gateway) records the profile.
  const recorder = new ShifterdFixture();
  t.teardown(() => recorder.cleanup());
  recorder.writeConfig([...stack.nodeConfig(stack.gw!.url, join(recorder.dir, 'lazycache')), 'lazyChunkTimeout=30']);
  await recorder.start();
  const first = await recorder.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
  t.is(first.code, 0, `${first.stderr}\n${recorder.log}`);
  t.true(await waitFor(() => recorder.log.includes('prefetch profile recorded'), 60_000), recorder.log);
  const profile = (await stack.profile(app.id))!;
  const expected = new Set([...stack.openChunks(app), ...profile]);

  const before = await stack.chunkAnswers();
  const { jobId } = await submit('team/lazy:1.0', 'profiled');
  t.true(await waitFor(() => existsSync(join(work, 'profiled.started')), 120_000), 'the job did not start');
  const afterProlog = await stack.chunkAnswers();
  const log = await slurm!.slurmdLog();
  t.log(/lazy image \S+ staged with .*/.exec(log)?.[0]);
  t.regex(
    log,
    new RegExp(
      `shifter: job ${jobId}: environment for id:${app.id} prepared; lazy image ${app.id} staged with its ` +
        `profile of ${profile.length} chunks, fetched ${expected.size} chunks \\([0-9.]+ MiB\\) in [0-9.]+ s`,
    ),
  );
  t.is(afterProlog - before, expected.size, 'the prolog fetched the tables and the profile');
  t.deepEqual(storedChunks(cacheDir).sort(), [...expected].map((n) => app.index.chunks[n]).sort());

  await writeFile(join(work, 'profiled.go'), '');
  const job = await slurm!.waitForJob(jobId);
  const out = await readFile(join(work, 'profiled.out'), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, OS_RELEASE);
  t.is((await stack.chunkAnswers()) - afterProlog, 0, 'the job read only what the prolog staged');
});

test.serial('a gateway that never answers the profile: the prolog returns at its limit, the job runs', async (t) => {
  const slow = await stack.pushAndPull('team/slow', '1.0');
  const blob = stack.blobOnlyChunks(slow);
  t.true(blob.length >= 8, `${blob.length} chunks of nothing but the blob`);
  await stack.putProfile(slow.id, blob);
  proxy!.hold(blob.map((n) => slow.index.chunks[n]));
  const limit = 3;
  writeNodeConfig(limit);

  const { jobId, submitted } = await submit('team/slow:1.0', 'slow');
  t.true(await waitFor(() => existsSync(join(work, 'slow.started')), 120_000), 'the job did not start');
  const startedAfter = (Date.now() - submitted) / 1000;
  t.log(`job started ${startedAfter.toFixed(1)} s after sbatch (stage limit ${limit} s, chunk timeout 90 s)`);
  t.true(startedAfter < 45, `the job started ${startedAfter} s after sbatch: the prolog waited past its limit`);
  t.regex(
    await slurm!.slurmdLog(),
    new RegExp(
      `shifter: job ${jobId}: environment for id:${slow.id} prepared; lazy image ${slow.id} not staged within ` +
        `lazyPrologStageTimeout=${limit} s: the job starts and the rest arrives in the background`,
    ),
  );
  await writeFile(join(work, 'slow.go'), '');
  const job = await slurm!.waitForJob(jobId);
  const out = await readFile(join(work, 'slow.out'), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  t.is(out, OS_RELEASE);
  const blobDigests = blob.map((n) => slow.index.chunks[n]);
  t.false(
    blobDigests.some((d) => storedChunks(cacheDir).includes(d)),
    'no held chunk arrived',
  );

  proxy!.release();
  t.true(
    await waitFor(() => blobDigests.every((d) => storedChunks(cacheDir).includes(d)), 60_000),
    'the profile chunks the prolog did not wait for arrived in the background',
  );
});
