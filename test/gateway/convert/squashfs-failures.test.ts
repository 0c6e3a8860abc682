/**
 * What a user sees when an image is hostile or broken: unsafe entries are dropped, logged with
 * the layer digest, and absent from the image; a corrupt layer fails naming its digest, leaving
 * neither an image nor a temporary file; a cancelled conversion leaves nothing either.
 */
import test from 'ava';
import { rootTest } from '../../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, mkdtemp, readdir, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { convertLayersToSquashfs } from '../../../gateway/convert/index.js';
import {
  buildImage,
  layerTar,
  file,
  dir,
  symlink,
  hardlink,
  type LayerCompression,
  type LayerSpec,
} from '../../helpers/oci-image.js';
import { snapshotTree } from './tree-snapshot.js';

const run = promisify(execFile);
const mounts: string[] = [];
let work = '';

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sqfs-failures-'));
});
test.after.always(async () => {
  for (const m of mounts) await run('umount', [m]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

function capturingLogger() {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'debug' }, sink), lines };
}

async function mountImage(image: string): Promise<string> {
  const mnt = await mkdtemp(join(work, 'mnt-'));
  await run('mount', ['-t', 'squashfs', '-o', 'loop,ro,nodev,nosuid', image, mnt]);
  mounts.push(mnt);
  return mnt;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );
const leftovers = async (dir: string) => (await readdir(dir)).filter((n) => n.startsWith('.tmp-'));

rootTest('unsafe entries are dropped, logged with their layer, and absent from the image', async (t) => {
  const marker = `shifter-escape-${randomBytes(4).toString('hex')}`;
  const image = await buildImage(join(work, 'evil'), {
    layers: [
      {
        entries: [
          dir('etc'),
          file('etc/passwd', 'root'),
          symlink('evil', '/etc'),
          file('plain', 'p'),
          { type: 'raw', header: { name: `/tmp/${marker}-abs`, type: 'file', size: 1 }, content: Buffer.from('x') },
          {
            type: 'raw',
            header: { name: `../../../../tmp/${marker}-up`, type: 'file', size: 1 },
            content: Buffer.from('x'),
          },
          { type: 'character-device', path: 'dev/null', major: 1, minor: 3 },
          { type: 'block-device', path: 'dev/sda', major: 8, minor: 0 },
          dir('dev'),
          file('dev/ok', 'ordinary file under dev'),
          { type: 'fifo', path: 'pipe' },
          hardlink('hl-abs', '/etc/shadow'),
          hardlink('hl-up', '../../etc/shadow'),
          hardlink('hl-missing', 'nothing-here'),
        ],
      },
      {
        compression: 'zstd',
        entries: [file('evil/passwd', 'pwned'), file('plain/inside', 'x'), hardlink('evil/link', 'plain')],
      },
    ],
  });
  const out = join(work, 'evil.squashfs');
  const { log, lines } = capturingLogger();
  const report = await convertLayersToSquashfs(image.layers, out, { log });

  const expectedDrops = [
    [0, `/tmp/${marker}-abs`],
    [0, `../../../../tmp/${marker}-up`],
    [0, 'dev/null'],
    [0, 'dev/sda'],
    [0, 'hl-abs'],
    [0, 'hl-up'],
    [0, 'hl-missing'],
    [1, 'evil/passwd'],
    [1, 'plain/inside'],
    [1, 'evil/link'],
  ] as const;
  t.deepEqual(
    report.dropped.map((d) => d.path).sort(),
    expectedDrops.map(([l, p]) => `${image.layers[l].digest}:${p}`).sort(),
  );
  const warned = lines.filter((l) => l.level === 40).map((l) => `${String(l.layer)}:${String(l.path)}`);
  t.deepEqual(warned.sort(), report.dropped.map((d) => d.path).sort(), 'each drop is a warning naming layer and path');

  const tree = await snapshotTree(await mountImage(out));
  t.deepEqual(Object.keys(tree).sort(), ['.', 'dev', 'dev/ok', 'etc', 'etc/passwd', 'evil', 'pipe', 'plain']);
  t.is(tree.evil?.target, '/etc');
  t.is(tree.pipe?.type, 'fifo');
  t.false(await exists(`/tmp/${marker}-abs`));
  t.false(await exists(`/tmp/${marker}-up`));
  t.is(await readFile('/etc/passwd', 'utf8').then((s) => s.includes('pwned')), false);
});

for (const compression of ['gzip', 'zstd', 'none'] as LayerCompression[]) {
  test(`a truncated ${compression} layer fails naming its digest, leaving no image and no temporary file`, async (t) => {
    const whole = await buildImage(join(work, `whole-${compression}`), {
      layers: [{ entries: [file('big', randomBytes(200_000)), file('after', 'x')], compression }],
    });
    const blob = await readFile(whole.layers[0].path);
    const cut: LayerSpec = { blob: blob.subarray(0, Math.floor(blob.length / 2)), compression };
    const placements: [number, LayerSpec[]][] = [
      [1, [cut, { entries: [file('b', 'b')] }]],
      [2, [{ entries: [file('a', 'a')] }, cut]],
    ];
    // As the base layer it fails while streaming into tar2sqfs; as an upper one, while being indexed.
    for (const [position, layers] of placements) {
      const image = await buildImage(join(work, `cut-${compression}-${position}`), { layers });
      const outDir = await mkdtemp(join(work, 'out-'));
      const out = join(outDir, 'image.squashfs');
      const err = await t.throwsAsync(convertLayersToSquashfs(image.layers, out, { log: pino({ level: 'silent' }) }));
      t.is((err as { code?: string }).code, 'CONVERSION_FAILED');
      t.true(err.message.includes(image.layers[position - 1].digest), err.message);
      t.true(err.message.includes(`(${position} of 2, `), err.message);
      t.false(await exists(out));
      t.deepEqual(await leftovers(outDir), []);
    }
  });
}

test('a layer that is not a tar, or not the compression it claims, names the digest', async (t) => {
  const cases: { blob: Buffer; compression: LayerCompression }[] = [
    { blob: Buffer.from('this is not a tar archive at all, just text '.repeat(40)), compression: 'none' },
    { blob: gzipSync(Buffer.from('gzip of plain text, not a tar '.repeat(40))), compression: 'gzip' },
    { blob: await layerTar([file('x', 'x')]), compression: 'gzip' },
  ];
  for (const [i, c] of cases.entries()) {
    const image = await buildImage(join(work, `bad-${i}`), { layers: [c] });
    const out = join(work, `bad-${i}.squashfs`);
    const err = await t.throwsAsync(convertLayersToSquashfs(image.layers, out, { log: pino({ level: 'silent' }) }));
    t.is((err as { code?: string }).code, 'CONVERSION_FAILED');
    t.true(err.message.includes(image.layers[0].digest), err.message);
    t.regex(err.message, /delete it from the cache and pull the image again/);
    t.false(await exists(out));
  }
  t.deepEqual(await leftovers(work), []);
});

test('cancelling a conversion removes the temporary file', async (t) => {
  const image = await buildImage(join(work, 'slow'), {
    layers: [
      { entries: Array.from({ length: 40 }, (_, i) => file(`f${i}`, randomBytes(1_000_000))), compression: 'none' },
    ],
  });
  const outDir = await mkdtemp(join(work, 'out-'));
  const out = join(outDir, 'image.squashfs');
  const controller = new AbortController();
  const running = convertLayersToSquashfs(image.layers, out, {
    log: pino({ level: 'silent' }),
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(), 50);
  const err = await t.throwsAsync(running);
  t.regex(err.message, /was cancelled/);
  t.false(await exists(out));
  t.deepEqual(await leftovers(outDir), []);
});

rootTest('a base layer holding a path twice is converted with tar semantics (last one wins)', async (t) => {
  const image = await buildImage(join(work, 'dup'), {
    layers: [
      { entries: [file('a', 'first'), dir('d'), file('d/x', 'x'), file('a', 'second'), file('d', 'file now')] },
      { entries: [file('b', 'b')] },
    ],
  });
  const out = join(work, 'dup.squashfs');
  const { log, lines } = capturingLogger();
  await convertLayersToSquashfs(image.layers, out, { log });
  const tree = await snapshotTree(await mountImage(out));
  t.deepEqual(Object.keys(tree).sort(), ['.', 'a', 'b', 'd']);
  t.is(tree.d?.type, 'file');
  t.is(tree.a?.size, 'second'.length);
  t.true(lines.some((l) => String(l.msg).includes('indexing the base layer')));
});

test('ConverterOptions choose the compressor; an unknown option is refused before any work', async (t) => {
  const image = await buildImage(join(work, 'opts'), { layers: [{ entries: [file('a', 'a'.repeat(10000))] }] });
  const out = join(work, 'gzip.squashfs');
  await convertLayersToSquashfs(image.layers, out, {
    log: pino({ level: 'silent' }),
    compression: ['-comp', 'gzip', '-Xcompression-level', '1'],
  });
  const { stdout } = await run('unsquashfs', ['-s', out]);
  t.regex(stdout, /Compression gzip/);
  await convertLayersToSquashfs(image.layers, join(work, 'zstd.squashfs'), { log: pino({ level: 'silent' }) });
  const { stdout: def } = await run('unsquashfs', ['-s', join(work, 'zstd.squashfs')]);
  t.regex(def, /Compression zstd/);
  await t.throwsAsync(
    convertLayersToSquashfs(image.layers, join(work, 'never.squashfs'), {
      log: pino({ level: 'silent' }),
      compression: ['-sort', 'f'],
    }),
    { message: /-sort is not a known option/ },
  );
  t.false(await exists(join(work, 'never.squashfs')));
});
