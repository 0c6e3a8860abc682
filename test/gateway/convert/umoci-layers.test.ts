/**
 * Layers written by umoci itself (`umoci insert`) end right after the last member's data, with
 * no padding and no end-of-archive blocks. Such images are common (umoci, some CI builders) and
 * must convert; the demo image of scripts/demo.sh is one. A layer that is really cut short must
 * still fail.
 */
import test from 'ava';
import { rootTest } from '../../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink as fsSymlink, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { convertLayersToSquashfs } from '../../../gateway/convert/index.js';

const run = promisify(execFile);
const log = pino({ level: 'silent' });
let work = '';
const mounts: string[] = [];

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'umoci-layers-'));
});
test.after.always(async () => {
  for (const m of mounts) await run('umount', [m]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

/** An OCI layout with one layer made by `umoci insert`; returns the layer blob's path and digest. */
async function umociLayer(name: string): Promise<{ path: string; digest: string }> {
  const rootfs = join(work, `${name}-rootfs`);
  await mkdir(join(rootfs, 'bin'), { recursive: true });
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
  await fsSymlink('busybox', join(rootfs, 'bin/sh'));
  await writeFile(join(rootfs, 'etc/os-release'), 'NAME="unpadded"\n');
  const layout = join(work, `${name}-oci`);
  await run('umoci', ['init', '--layout', layout]);
  await run('umoci', ['new', '--image', `${layout}:1`]);
  await run('umoci', ['insert', '--image', `${layout}:1`, rootfs, '/']);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
  const manifestHex = index.manifests[0].digest.slice('sha256:'.length);
  const manifest = JSON.parse(await readFile(join(layout, 'blobs/sha256', manifestHex), 'utf8')) as {
    layers: { digest: string }[];
  };
  const digest = manifest.layers[0].digest;
  return { path: join(layout, 'blobs/sha256', digest.slice('sha256:'.length)), digest };
}

rootTest('a layer made by umoci insert (no final padding, no end blocks) converts completely', async (t) => {
  const layer = await umociLayer('ok');
  const tar = gunzipSync(await readFile(layer.path));
  t.not(tar.length % 512, 0, 'precondition: umoci wrote an unpadded tar');

  const out = join(work, 'ok.squashfs');
  const report = await convertLayersToSquashfs(
    [{ path: layer.path, digest: layer.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
    out,
    { log },
  );
  t.deepEqual(report.dropped, []);
  const mnt = await mkdtemp(join(work, 'mnt-'));
  await run('mount', ['-t', 'squashfs', '-o', 'loop,ro,nodev,nosuid', out, mnt]);
  mounts.push(mnt);
  t.is(
    await readFile(join(mnt, 'etc/os-release'), 'utf8'),
    'NAME="unpadded"\n',
    'the last member, the one without padding, is complete',
  );
  t.deepEqual(await readFile(join(mnt, 'bin/busybox')), await readFile('/bin/busybox'));
});

test('an unpadded layer cut inside the data of a member still fails', async (t) => {
  const layer = await umociLayer('cut');
  const tar = gunzipSync(await readFile(layer.path));
  const cutPath = join(work, 'cut.tar.gz');
  // Half-way is inside busybox's 2 MB of data: far more is missing than padding could restore.
  await writeFile(cutPath, gzipSync(tar.subarray(0, Math.floor(tar.length / 2) + 100)));
  const out = join(work, 'cut.squashfs');
  const err = await t.throwsAsync(
    convertLayersToSquashfs(
      [{ path: cutPath, digest: layer.digest, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip' }],
      out,
      { log },
    ),
  );
  t.is((err as { code?: string }).code, 'CONVERSION_FAILED');
  t.regex(err.message, new RegExp(layer.digest));
});
