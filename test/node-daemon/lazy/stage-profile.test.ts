/**
 * `shifterd-cache stage --profile IMAGE`: what a start of the image reads first (superblock,
 * metadata tables, the chunks of its recorded profile) is fetched onto the node, nothing else,
 * with the real gateway, shifterd and its FUSE server; the profiled command then fetches nothing.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chunksCovering } from '../../../common/chunk-index.js';
import { REPO, ShifterdFixture, ensureTestUser } from '../runtime-fixture.js';
import { startChunkServer } from './chunk-server.js';
import { buildLazyImage, lazyConfig, startLazyServer, waitFor } from './lazy-fixture.js';
import { LazyGatewayStack, OS_RELEASE, storedChunks, type PulledImage } from './lazy-gateway-fixture.js';

ensureTestUser();
const CACHE_CLI = join(REPO, 'bin', 'shifterd-cache');
const stack = new LazyGatewayStack();
let app: PulledImage;

test.before(async () => {
  await stack.start();
  app = await stack.pushAndPull('team/lazy', '1.0');
});

test.after.always(() => stack.stop());

async function lazyNode(t: { teardown: (f: () => Promise<void>) => void }) {
  const fx = new ShifterdFixture();
  t.teardown(() => fx.cleanup());
  const cacheDir = join(fx.dir, 'lazycache');
  fx.writeConfig([...stack.nodeConfig(stack.gw!.url, cacheDir), 'lazyChunkTimeout=30']);
  await fx.start();
  return { fx, cacheDir };
}

function cacheCli(fx: ShifterdFixture, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(CACHE_CLI, ['--admin-socket', fx.adminSocket, ...args], { timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

test.serial(
  'stage --profile fetches the profile and the tables only; the profiled command then fetches none',
  async (t) => {
    // The first cold start anywhere records the profile (its reads in its first 10 s).
    const recorder = await lazyNode(t);
    const first = await recorder.fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
    t.is(first.code, 0, `${first.stderr}\n${recorder.fx.log}`);
    t.true(await waitFor(() => recorder.fx.log.includes('prefetch profile recorded'), 60_000), recorder.fx.log);
    const profile = (await stack.profile(app.id))!;
    t.truthy(profile);
    const expected = new Set([...stack.openChunks(app), ...profile]);
    t.true(expected.size < app.index.chunks.length, 'the blob is in no profile');

    const node = await lazyNode(t);
    const before = await stack.chunkAnswers();
    const staged = await cacheCli(node.fx, ['stage', '--profile', 'team/lazy:1.0']);
    t.is(staged.code, 0, `${staged.stderr}\n${node.fx.log}`);
    const fetchedByStage = (await stack.chunkAnswers()) - before;
    t.log(staged.stdout.trim());
    const lines = staged.stdout.trim().split('\n');
    t.regex(
      lines[0],
      new RegExp(
        `^image ${app.id}: its prefetch profile \\(${profile.length} chunks\\), superblock and metadata tables ` +
          `staged: fetched ${expected.size} chunks \\([0-9.]+ MiB\\) in [0-9.]+ s$`,
      ),
    );
    t.regex(lines[1], new RegExp(`\\(\\d+%, ${expected.size}/${app.index.chunks.length} chunks\\)`));
    t.is(fetchedByStage, expected.size, 'the gateway answered exactly the profile and table chunks');
    t.deepEqual(
      storedChunks(node.cacheDir).sort(),
      [...expected].map((n) => app.index.chunks[n]).sort(),
      'the node holds exactly those chunks',
    );
    const status = await cacheCli(node.fx, ['status']);
    t.regex(status.stdout, new RegExp(`\\(\\d+%, ${expected.size}/${app.index.chunks.length} chunks\\)  hits 0`));

    const run = await node.fx.run(['--image=team/lazy:1.0', 'cat', '/etc/os-release']);
    t.is(run.code, 0, `${run.stderr}\n${node.fx.log}`);
    t.is(run.stdout, OS_RELEASE);
    t.is((await stack.chunkAnswers()) - before, expected.size, 'the profiled command fetched no further chunk');
    t.is(storedChunks(node.cacheDir).length, expected.size);
    t.regex(node.fx.log, /"what":"profile".*"image staged"|"image staged".*"what":"profile"/);
  },
);

test.serial('stage --profile of an image with no profile says so in one line and stages the tables only', async (t) => {
  const fresh = await stack.pushAndPull('team/fresh', '1.0');
  const node = await lazyNode(t);
  const before = await stack.chunkAnswers();
  const staged = await cacheCli(node.fx, ['stage', '--profile', 'team/fresh:1.0']);
  t.is(staged.code, 0, `${staged.stderr}\n${node.fx.log}`);
  const tables = stack.openChunks(fresh);
  const lines = staged.stdout.trim().split('\n');
  t.is(lines.length, 2, staged.stdout);
  t.regex(
    lines[0],
    new RegExp(
      `^image ${fresh.id} has no recorded prefetch profile yet: staged its superblock and metadata tables only ` +
        `\\(its next cold start records one\\): fetched ${tables.size} chunks \\([0-9.]+ MiB\\) in [0-9.]+ s$`,
    ),
  );
  t.is((await stack.chunkAnswers()) - before, tables.size);
  t.deepEqual(storedChunks(node.cacheDir).sort(), [...tables].map((n) => fresh.index.chunks[n]).sort());
});

test('a profile stage nobody reads after sends no empty profile; a profile recorded later is staged', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-stagep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const { image } = buildLazyImage(dir);
  const chunks = await startChunkServer(image, { chunkSize: 64 * 1024 });
  t.teardown(() => chunks.close());
  const { index } = chunks;
  const superblock = (await readFile(image)).subarray(0, 96);
  const tablesStart = Number(superblock.readBigUInt64LE(64));
  const used = Number(superblock.readBigUInt64LE(40));
  const atOpen = new Set([0, ...chunksCovering(index, tablesStart, used - tablesStart)]);

  const node = await startLazyServer(lazyConfig(join(dir, 'node'), [chunks.url], { profileWindowMs: 500 }));
  t.teardown(() => node.supervisor.stop());
  const report = await node.supervisor.stage(index.imageId, 'profile');
  t.is(report.profileChunks, undefined);
  t.is(report.fetchedChunks, atOpen.size);
  const sorted = (c: Iterable<number>): number[] => [...new Set(c)].sort((a, b) => a - b);
  t.deepEqual(sorted(chunks.chunkRequests), sorted(atOpen));
  await new Promise((r) => setTimeout(r, 2500));
  t.is(chunks.profile, undefined, 'no empty profile was sent');

  chunks.profile = Buffer.from(JSON.stringify({ version: 1, imageId: index.imageId, chunks: [3, 9, 17] }));
  const again = await node.supervisor.stage(index.imageId, 'profile');
  t.is(again.profileChunks, 3);
  t.is(again.fetchedChunks, [3, 9, 17].filter((n) => !atOpen.has(n)).length);
  t.deepEqual(sorted(chunks.chunkRequests), sorted([...atOpen, 3, 9, 17]));
});
