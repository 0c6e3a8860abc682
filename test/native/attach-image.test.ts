/**
 * Image attachment on real loop devices: read-only, autoclear, shared by environments, freed
 * when the daemon releases it and no environment uses it; moved onto an identical file
 * (LOOP_CHANGE_FD) under its mount. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import {
  attachImage,
  createEnvironment,
  loopDevicesReading,
  moveLoopDevice,
} from '../../node-daemon/adapters/index.js';
import { buildTestImage } from './image-fixture.js';

let dir: string;
let imagePath: string;

test.before(() => {
  dir = mkdtempSync(join(tmpdir(), 'shifter-attach-'));
  imagePath = buildTestImage(dir, join(process.cwd(), 'test/native/fixtures'));
});

test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const sysLoop = (dev: string, file: string) => join('/sys/block', basename(dev), file);

function backingFile(dev: string): string | null {
  try {
    return readFileSync(sysLoop(dev, 'loop/backing_file'), 'utf8').trim();
  } catch {
    return null;
  }
}

async function waitFreed(dev: string, path: string): Promise<boolean> {
  for (let i = 0; i < 100; i++) {
    if (backingFile(dev) !== path) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

test.serial('an attached image is a read-only autoclear loop device that goes away on release', async (t) => {
  const image = await attachImage(imagePath);
  t.regex(image.loopDevice, /^\/dev\/loop\d+$/);
  t.true(image.fd > 2);
  t.is(backingFile(image.loopDevice), imagePath);
  t.is(readFileSync(sysLoop(image.loopDevice, 'ro'), 'utf8').trim(), '1');
  t.is(readFileSync(sysLoop(image.loopDevice, 'loop/autoclear'), 'utf8').trim(), '1');
  image.release();
  t.is(image.fd, -1);
  t.true(await waitFreed(image.loopDevice, imagePath));
});

test.serial('environments keep the image alive after the daemon released it', async (t) => {
  const image = await attachImage(imagePath);
  const env = await createEnvironment({ image, uid: 4242, gid: 4242, groups: [], scaffoldDirs: [], mounts: [] });
  image.release();
  await new Promise((r) => setTimeout(r, 100));
  t.is(backingFile(image.loopDevice), imagePath);
  env.close();
  t.true(await waitFreed(image.loopDevice, imagePath));
});

test('concurrent attaches get distinct loop devices', async (t) => {
  const images = await Promise.all(Array.from({ length: 6 }, () => attachImage(imagePath)));
  t.is(new Set(images.map((i) => i.loopDevice)).size, 6);
  for (const i of images) i.release();
});

test('a file that is not squashfs, or no file, gives one clear error', async (t) => {
  const junk = join(dir, 'junk.sqfs');
  writeFileSync(junk, 'not an image\n'.repeat(1000));
  const err = await t.throwsAsync(attachImage(junk));
  t.regex(
    err.message,
    /^shifter-nshelper: mount squashfs \(is it a squashfs image\?\): .*junk\.sqfs: Invalid argument/,
  );
  t.false(existsSync(join(dir, 'nothing.sqfs')));
  const missing = await t.throwsAsync(attachImage(join(dir, 'nothing.sqfs')));
  t.is((missing as Error & { code?: string }).code, 'NOT_FOUND');
  t.regex(missing.message, /^shifter-nshelper: open image: .*nothing\.sqfs: No such file or directory$/);
  const relative = await t.throwsAsync(attachImage('image.sqfs'));
  t.regex(relative.message, /must be absolute/);
});

test.serial('a loop device moves onto an identical file under its mount; anything else is refused', async (t) => {
  const copy = join(dir, 'copy.sqfs');
  copyFileSync(imagePath, copy);
  const image = await attachImage(imagePath);
  t.teardown(() => image.release());
  t.deepEqual(loopDevicesReading(imagePath), [image.loopDevice]);
  const inImage = `/proc/self/fd/${image.fd}/etc/image-only`;
  t.is(readFileSync(inImage, 'utf8'), 'from the image\n');

  await moveLoopDevice(image.loopDevice, imagePath, copy);
  t.is(backingFile(image.loopDevice), copy);
  t.deepEqual(loopDevicesReading(imagePath), []);
  t.deepEqual(loopDevicesReading(copy), [image.loopDevice]);
  writeFileSync('/proc/sys/vm/drop_caches', '3');
  t.is(readFileSync(inImage, 'utf8'), 'from the image\n', 'the mount reads on from the new file');

  // The device reads the copy now: a request naming the old file is out of date and refused.
  const stale = await t.throwsAsync(moveLoopDevice(image.loopDevice, imagePath, copy));
  t.is((stale as Error & { code?: string }).code, 'NOT_FOUND');
  t.regex(stale.message, new RegExp(`${image.loopDevice} no longer reads .*image\\.sqfs`));
  const bigger = join(dir, 'bigger.sqfs');
  writeFileSync(bigger, Buffer.concat([readFileSync(imagePath), Buffer.alloc(4096)]));
  const sized = await t.throwsAsync(moveLoopDevice(image.loopDevice, copy, bigger));
  t.regex(sized.message, /LOOP_CHANGE_FD: .* Invalid argument/);
  t.is(backingFile(image.loopDevice), copy);
  const relative = await t.throwsAsync(moveLoopDevice(image.loopDevice, copy, 'copy.sqfs'));
  t.regex(relative.message, /must be absolute/);
});
