/**
 * The site's Limits as a user meets them: an image past a limit fails while it streams, with a
 * message naming the imagemanager.json key and its value, leaving no image, no temporary file and
 * no scratch index behind. The inode bomb is scaled down (limit 20,000, image 50,000 entries) so
 * the limit, not the machine, is what stops it; the gzip bomb is real (1.1 GiB of zeros in a
 * ~1 MB blob) and is stopped by the default MaxExpansionRatio.
 */
import test, { type ExecutionContext } from 'ava';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { convertLayersToSquashfs } from '../../../gateway/convert/index.js';
import { checkCompressedSizes } from '../../../gateway/convert/limits.js';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from '../../../gateway/config/imagemanager.js';
import { buildImage, emptyFilesLayer, file, zeroFileLayer, type LayerSpec } from '../../helpers/oci-image.js';

let work = '';
const log = pino({ level: 'silent' });
test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'convert-limits-'));
});
test.after.always(async () => {
  if (work) await rm(work, { recursive: true, force: true });
});

const limits = (l: Partial<ImageLimits>): ImageLimits => ({ ...DEFAULT_IMAGE_LIMITS, ...l });

async function convertExpectingFailure(
  t: ExecutionContext,
  name: string,
  layers: LayerSpec[],
  l: ImageLimits,
): Promise<Error> {
  const image = await buildImage(join(work, name), { layers });
  const outDir = join(work, `${name}-out`);
  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir);
  const err = await t.throwsAsync(
    convertLayersToSquashfs(image.layers, join(outDir, 'image.sqfs'), { log, limits: l }),
  );
  t.deepEqual(await readdir(outDir), [], 'no image, no temporary file, no scratch index left');
  return err;
}

test('an inode bomb fails on Limits.MaxEntries, naming the key and its value', async (t) => {
  const err = await convertExpectingFailure(
    t,
    'inodes',
    [{ blob: await emptyFilesLayer(50_000), compression: 'gzip' }],
    limits({ maxEntries: 20_000 }),
  );
  t.is((err as { code?: string }).code, 'LIMIT_EXCEEDED');
  t.regex(err.message, /more than 20000 entries/);
  t.regex(err.message, /Limits\.MaxEntries = 20000/);
  t.regex(err.message, /raise Limits\.MaxEntries in imagemanager\.json/);
});

test('entries are counted over all layers, each layer once', async (t) => {
  const layer = await emptyFilesLayer(6_000);
  const layers: LayerSpec[] = [
    { blob: layer, compression: 'gzip' },
    { blob: await emptyFilesLayer(6_001), compression: 'gzip' },
  ];
  const ok = await buildImage(join(work, 'two'), { layers });
  const report = await convertLayersToSquashfs(ok.layers, join(work, 'two.sqfs'), {
    log,
    limits: limits({ maxEntries: 12_020 }),
  });
  t.true(report.entries > 6_000, 'under the limit the image converts although its layers are read more than once');
  const err = await convertExpectingFailure(t, 'two-over', layers, limits({ maxEntries: 12_000 }));
  t.regex(err.message, /Limits\.MaxEntries = 12000/);
});

test('an image expanding past Limits.MaxExpandedBytes fails, naming the key', async (t) => {
  const err = await convertExpectingFailure(
    t,
    'expanded',
    [{ entries: [file('big', Buffer.alloc(8 << 20))] }],
    limits({ maxExpandedBytes: 4 << 20 }),
  );
  t.regex(err.message, /expands to more than 4194304 bytes/);
  t.regex(err.message, /Limits\.MaxExpandedBytes = 4194304/);
});

test('a gzip bomb fails on the default Limits.MaxExpansionRatio', async (t) => {
  const blob = await zeroFileLayer('zeros', 1100 * 1024 * 1024);
  t.true(blob.length < 8 << 20, `the bomb is small (${blob.length} bytes)`);
  const err = await convertExpectingFailure(
    t,
    'bomb',
    [{ entries: [file('etc/hostname', 'x\n')] }, { blob, compression: 'gzip' }],
    DEFAULT_IMAGE_LIMITS,
  );
  t.regex(err.message, /compression bomb/);
  t.regex(err.message, /Limits\.MaxExpansionRatio = 100/);
});

test('compressed sizes from the manifest are checked before any download', (t) => {
  const l = limits({ maxLayerBytes: 1000, maxImageBytes: 1500 });
  t.notThrows(() =>
    checkCompressedSizes(
      [
        { digest: 'sha256:a', size: 1000 },
        { digest: 'sha256:b', size: 500 },
      ],
      l,
    ),
  );
  t.throws(() => checkCompressedSizes([{ digest: 'sha256:a', size: 1001 }], l), {
    message: /layer sha256:a is 1001 bytes compressed.*Limits\.MaxLayerBytes = 1000/,
  });
  t.throws(
    () =>
      checkCompressedSizes(
        [
          { digest: 'sha256:a', size: 900 },
          { digest: 'sha256:b', size: 700 },
        ],
        l,
      ),
    { message: /1600 bytes compressed.*Limits\.MaxImageBytes = 1500/ },
  );
});

test('dropped entries are listed up to 100 and counted beyond', async (t) => {
  const devices = Array.from({ length: 150 }, (_, i) => ({ type: 'character-device' as const, path: `dev/c${i}` }));
  const image = await buildImage(join(work, 'devices'), { layers: [{ entries: [file('ok', 'ok'), ...devices] }] });
  const report = await convertLayersToSquashfs(image.layers, join(work, 'devices.sqfs'), { log });
  t.is(report.dropped.length, 100);
  t.is(report.droppedTotal, 150);
});
