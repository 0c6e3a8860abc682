/**
 * Which chunk size for the lazy image cache: what a node would fetch, in bytes and requests, for
 * `python3 -c 'import json, email'` and for a metadata walk (every inode stat'ed, no file read),
 * with 1, 2 and 4 MiB chunks (and 256 KiB for scale).
 * The read offsets are the ones a node's FUSE server gets: the image is served over a tiny
 * logging FUSE server (bench/read-log-fuse.ts, its own process), attached read-only with direct
 * I/O to a loop device, mounted as squashfs, and the workload runs in a chroot; every FUSE read
 * (kernel readahead included, as on a node) is logged. The mount itself (superblock) counts.
 * Images: this machine's python3.11 (bench/make-python-image.sh, mksquashfs zstd) and the same
 * tree converted the gateway's way (sqfs2tar | tar2sqfs with the gateway's default settings).
 * Time estimate: serial fetches, each RTT + its bytes at 1 Gbit/s (the import reads mostly
 * serially: node-runtime-notes.md), without prefetch.
 * Run as root: npx tsc -p tsconfig.json && node dist/bench/chunk-size.js
 */
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tar2sqfsSettings } from '../gateway/convert/converter-options.js';

const run = promisify(execFile);
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const MIB = 1024 * 1024;
const SIZES = [256 * 1024, MIB, 2 * MIB, 4 * MIB];
const RTTS_MS = [0.1, 2, 10];
const GBIT_BYTES_PER_MS = 125_000;
const RUNS = 3;

interface Workload {
  name: string;
  /** Runs inside the mounted image. */
  command(mnt: string): [string, string[]];
}

const WORKLOADS: Workload[] = [
  {
    name: "python3 -c 'import json, email'",
    command: (mnt) => ['chroot', [mnt, '/usr/bin/python3', '-c', 'import json, email']],
  },
  {
    name: 'metadata walk (find -printf size/mode of every entry)',
    command: (mnt) => ['find', [mnt, '-xdev', '-printf', '%s %m\\n']],
  },
];

function quiet(cmd: string, args: string[]): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', rej);
    child.on('exit', (code) => (code === 0 ? res() : rej(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

/** Starts the logging FUSE server on `image`; resolves once it has mounted. */
async function serveLogged(image: string, mnt: string, log: string): Promise<() => Promise<void>> {
  const child = spawn(process.execPath, [join(ROOT, 'dist', 'bench', 'read-log-fuse.js'), image, mnt, log], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  await new Promise<void>((res, rej) => {
    child.stdout.once('data', () => res());
    child.once('exit', (code) => rej(new Error(`read-log-fuse exited ${code} before mounting ${mnt}`)));
  });
  return async () => {
    // Unmounted from here with umount2 (node-runtime-notes.md); the server then only has to exit.
    await run('umount', [mnt]).catch(() => undefined);
    child.kill('SIGTERM');
    await exited;
  };
}

/** The [offset, length] reads a node's FUSE server would get for `work` on `image`. */
async function fuseReads(image: string, work: Workload, dir: string): Promise<[number, number][]> {
  const fuseMnt = join(dir, 'fuse');
  const mnt = join(dir, 'mnt');
  const log = join(dir, `reads-${Date.now()}.log`);
  await writeFile(log, '');
  const stop = await serveLogged(image, fuseMnt, log);
  try {
    const { stdout } = await run('losetup', [
      '--read-only',
      '--direct-io=on',
      '--find',
      '--show',
      join(fuseMnt, 'image'),
    ]);
    const dev = stdout.trim();
    try {
      await run('mount', ['-t', 'squashfs', '-o', 'ro,nosuid,nodev', dev, mnt]);
      try {
        const [cmd, args] = work.command(mnt);
        await quiet(cmd, args);
      } finally {
        await run('umount', [mnt]);
      }
    } finally {
      await run('losetup', ['-d', dev]);
    }
  } finally {
    await stop();
  }
  const text = (await readFile(log, 'utf8')).trim();
  return text === '' ? [] : text.split('\n').map((l) => l.split(' ').map(Number) as [number, number]);
}

function fmtMiB(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

/** Bytes covered by the reads, each byte once. */
function distinctBytes(reads: [number, number][], size: number): number {
  const sorted = [...reads].sort((a, b) => a[0] - b[0]);
  let total = 0;
  let end = 0;
  for (const [off, len] of sorted) {
    const to = Math.min(off + len, size);
    if (to > end) {
      total += to - Math.max(off, end);
      end = to;
    }
  }
  return total;
}

async function measure(label: string, image: string, dir: string): Promise<string[]> {
  const size = (await stat(image)).size;
  const rows: string[] = [];
  for (const work of WORKLOADS) {
    // The run in the middle by bytes read: the kernel's readahead differs a little run to run.
    const runs: [number, number][][] = [];
    for (let i = 0; i < RUNS; i++) runs.push(await fuseReads(image, work, dir));
    runs.sort((a, b) => distinctBytes(a, size) - distinctBytes(b, size));
    const reads = runs[Math.floor(RUNS / 2)];
    const touched = distinctBytes(reads, size);
    for (const cs of SIZES) {
      const chunks = new Set<number>();
      for (const [off, len] of reads) {
        for (let c = Math.floor(off / cs); c * cs < Math.min(off + len, size); c++) chunks.add(c);
      }
      let bytes = 0;
      for (const c of chunks) bytes += Math.min(cs, size - c * cs);
      const times = RTTS_MS.map((rtt) => (chunks.size * rtt + bytes / GBIT_BYTES_PER_MS).toFixed(0));
      rows.push(
        `| ${label} (${fmtMiB(size)} MiB) | ${work.name} | ${fmtMiB(touched)} | ${cs / 1024} KiB | ` +
          `${chunks.size} | ${fmtMiB(bytes)} (${((100 * bytes) / size).toFixed(0)}%) | ${times.join(' / ')} |`,
      );
    }
  }
  return rows;
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: the bench uses loop devices, mount and chroot');
  const dir = await mkdtemp(join(tmpdir(), 'chunk-size-'));
  try {
    await mkdir(join(dir, 'mnt'));
    const mksquashfsImage = join(dir, 'python-mksquashfs.squashfs');
    await run('bash', [join(ROOT, 'bench', 'make-python-image.sh'), mksquashfsImage]);
    const gatewayImage = join(dir, 'python-tar2sqfs.squashfs');
    const { args } = tar2sqfsSettings(undefined, 2);
    await run('bash', [
      '-c',
      `set -o pipefail; sqfs2tar "$1" | tar2sqfs ${args.map((a) => `'${a}'`).join(' ')} "$2"`,
      'x',
      mksquashfsImage,
      gatewayImage,
    ]);
    const rows = [
      ...(await measure('gateway (tar2sqfs)', gatewayImage, dir)),
      ...(await measure('mksquashfs', mksquashfsImage, dir)),
    ];
    console.log(
      `| image | workload | MiB read over FUSE | chunk | requests | fetched MiB (% of image) | ` +
        `serial fetch ms at ${RTTS_MS.join(' / ')} ms RTT, 1 Gbit/s |`,
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const r of rows) console.log(r);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(`chunk-size: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
