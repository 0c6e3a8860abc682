/**
 * Conversion throughput: builds a ~100 MB (uncompressed) four-layer gzip image from files of
 * this machine's /usr, then times
 *   1. decompression alone (every layer, to nowhere),
 *   2. our streaming conversion (default zstd level 3; and with `-comp gzip`),
 *   3. upstream's pipeline: `umoci unpack` + `mksquashfs -all-root -no-xattrs` (default gzip).
 * Run: npx tsc -p tsconfig.json && node dist/bench/convert.js [sizeMB]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, lstat, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { convertLayersToSquashfs } from '../gateway/convert/index.js';
import { openLayerSource } from '../gateway/convert/layer-source.js';
import { buildImage, umociUnpack, file, dir, whiteout, type EntrySpec } from '../test/helpers/oci-image.js';

const run = promisify(execFile);
const targetBytes = Number(process.argv[2] ?? 100) * 1e6;

async function collect(root: string, budget: number): Promise<EntrySpec[][]> {
  const layers: EntrySpec[][] = [[], [], []];
  let total = 0;
  let n = 0;
  const walk = async (abs: string, rel: string): Promise<void> => {
    for (const name of (await readdir(abs)).sort()) {
      if (total >= budget) return;
      const a = join(abs, name);
      const r = `${rel}/${name}`;
      const st = await lstat(a).catch(() => null);
      if (!st) continue;
      const layer = layers[Math.min(2, Math.floor((total / budget) * 3))];
      if (st.isDirectory()) {
        layer.push(dir(r));
        await walk(a, r);
      } else if (st.isFile() && st.size < 20e6) {
        layer.push(file(r, await readFile(a), { mode: st.mode & 0o7777 }));
        total += st.size;
        n++;
      }
    }
  };
  await walk(root, 'usr');
  process.stdout.write(`image: ${n} files, ${(total / 1e6).toFixed(1)} MB of file data from ${root}\n`);
  return layers;
}

async function time<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await f();
  return [r, (performance.now() - t0) / 1000];
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'bench-convert-'));
  try {
    const [l1, l2, l3] = await collect('/usr/lib', targetBytes);
    const upper: EntrySpec[] = [whiteout(l1.find((e) => e.type === 'file')!.path), file('etc/motd', 'bench\n')];
    const image = await buildImage(join(work, 'layout'), {
      layers: [{ entries: l1 }, { entries: l2 }, { entries: l3 }, { entries: upper }],
    });
    const compressed = (await Promise.all(image.layers.map((l) => stat(l.path)))).reduce((s, x) => s + x.size, 0);

    const [tarBytes, tDecomp] = await time(async () => {
      let bytes = 0;
      for (const l of image.layers) {
        const src = openLayerSource(l.path, 'gzip');
        for await (const chunk of src.stream) bytes += (chunk as Buffer).length;
        await src.finished;
      }
      return bytes;
    });
    const mb = tarBytes / 1e6;
    const line = (what: string, s: number, out?: number) =>
      process.stdout.write(
        `${what.padEnd(44)} ${s.toFixed(2).padStart(6)} s  ${(mb / s).toFixed(0).padStart(5)} MB/s${out ? `  image ${(out / 1e6).toFixed(1)} MB` : ''}\n`,
      );
    process.stdout.write(
      `layers: ${image.layers.length} gzip blobs, ${(compressed / 1e6).toFixed(1)} MB compressed, ${mb.toFixed(1)} MB of tar\n`,
    );
    line('decompression alone (zlib)', tDecomp);

    const log = pino({ level: 'silent' });
    const [zstdReport, tZstd] = await time(() =>
      convertLayersToSquashfs(image.layers, join(work, 'ours-zstd.sqfs'), { log }),
    );
    line('ours: stream -> tar2sqfs (zstd level 3)', tZstd, zstdReport.bytes);
    const [gzipReport, tGzip] = await time(() =>
      convertLayersToSquashfs(image.layers, join(work, 'ours-gzip.sqfs'), { log, compression: ['-comp', 'gzip'] }),
    );
    line('ours: stream -> tar2sqfs (-comp gzip)', tGzip, gzipReport.bytes);

    const [rootfs, tUnpack] = await time(() => umociUnpack(image.layoutDir, image.tag, join(work, 'bundle')));
    line('upstream: umoci unpack', tUnpack);
    const [, tMk] = await time(() =>
      run('mksquashfs', [rootfs, join(work, 'upstream.sqfs'), '-all-root', '-no-xattrs', '-no-progress', '-quiet']),
    );
    const upstreamSize = (await stat(join(work, 'upstream.sqfs'))).size;
    line('upstream: mksquashfs (gzip)', tMk, upstreamSize);
    line('upstream: unpack + mksquashfs total', tUnpack + tMk, upstreamSize);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
