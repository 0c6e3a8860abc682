/**
 * Which job images the prolog stages (those shifterd reads lazily on the node), and the one line
 * it logs about the stage.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageId } from '../../../common/image-descriptor.js';
import { describeStage, isLazyOnNode, pinnedImageId } from '../../../node-daemon/slurm/job-env.js';

const ID = 'a'.repeat(64) as ImageId;
const lazy = { dir: '/var/cache/shifter' };

test('an image is lazy on the node when a lazy cache is set and imagePath has no .meta of it', (t) => {
  const imagePath = mkdtempSync(join(tmpdir(), 'job-env-stage-'));
  t.teardown(() => rmSync(imagePath, { recursive: true, force: true }));
  t.false(isLazyOnNode({ imagePath }, ID), 'no lazy cache: images come from imagePath');
  t.true(isLazyOnNode({ lazyImageCache: lazy }, ID), 'no imagePath: every image is lazy');
  t.true(isLazyOnNode({ imagePath: '', lazyImageCache: lazy }, ID));
  t.true(isLazyOnNode({ imagePath, lazyImageCache: lazy }, ID));
  writeFileSync(join(imagePath, `${ID}.meta`), 'FORMAT: squashfs\n');
  t.false(isLazyOnNode({ imagePath, lazyImageCache: lazy }, ID), 'in imagePath: read from there');
});

test("the prolog stages the job's pinned image id only", (t) => {
  t.is(pinnedImageId(`id:${ID}`), ID);
  t.is(pinnedImageId('docker:team/app:1'), undefined);
  t.is(pinnedImageId('id:abc'), undefined);
});

test('the prolog says what it staged, that there was no profile, that the limit passed, or why it failed', (t) => {
  const fetched = { fetchedChunks: 14, fetchedBytes: 14 * 1024 * 1024, seconds: 0.8512 };
  t.is(
    describeStage(ID, { kind: 'staged', ...fetched, profileChunks: 12 }),
    `lazy image ${ID} staged with its profile of 12 chunks, fetched 14 chunks (14.0 MiB) in 0.85 s`,
  );
  t.is(
    describeStage(ID, { kind: 'staged', ...fetched }),
    `lazy image ${ID} has no recorded profile: its tables staged, fetched 14 chunks (14.0 MiB) in 0.85 s`,
  );
  t.is(
    describeStage(ID, { kind: 'late', limitSeconds: 60 }),
    `lazy image ${ID} not staged within lazyPrologStageTimeout=60 s: ` +
      'the job starts and the rest arrives in the background',
  );
  t.is(
    describeStage(ID, { kind: 'failed', reason: 'cannot fetch the profile of x: gw (HTTP 500)' }),
    `lazy image ${ID} not staged (the job starts; its reads fetch what they need): ` +
      'cannot fetch the profile of x: gw (HTTP 500)',
  );
});
