/**
 * Peak memory of a real gateway converting images of many entries: for each count N, a one-layer
 * gzip image of N empty files (1000 per directory) is pushed to a local docker-registry and pulled
 * through a fresh `bin/shifter-gateway`; the gateway's VmHWM (peak RSS, /proc/PID/status) is read
 * once the pull is READY or FAILURE.
 * Run (as root): npx tsc -p tsconfig.json && node dist/bench/convert-rss.js [--root REPO] [N...]
 * `--root` runs another checkout's gateway (built), e.g. a worktree of the base commit.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { emptyFilesLayer } from '../test/helpers/oci-image.js';
import { imageConfig, pushImage, startRegistry } from '../test/helpers/registry.js';

interface Run {
  entries: number;
  status: string;
  message: string;
  seconds: number;
  peakMiB: number;
}

async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

async function pullOnce(root: string, registry: string, tag: string, entries: number): Promise<Run> {
  const work = await mkdtemp(join(tmpdir(), 'bench-rss-'));
  const config = {
    CacheDirectory: join(work, 'cache'),
    ExpandDirectory: join(work, 'expand'),
    Authentication: 'mock',
    DefaultImageLocation: 'bench',
    Locations: { bench: { url: registry } },
    Platforms: { sys: { accesstype: 'local', local: { imageDir: join(work, 'images') } } },
  };
  await writeFile(join(work, 'imagemanager.json'), JSON.stringify(config));
  const child = spawn(
    join(root, 'bin', 'shifter-gateway'),
    ['--config', join(work, 'imagemanager.json'), '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    let url = '';
    for (let i = 0; i < 400 && !url; i++) {
      url = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? '';
      if (!url) await new Promise((r) => setTimeout(r, 50));
    }
    if (!url) throw new Error(`the gateway did not start:\n${out}`);
    const started = performance.now();
    let rec: Record<string, unknown> = {};
    while (rec.status !== 'READY' && rec.status !== 'FAILURE') {
      if (child.exitCode !== null || child.signalCode !== null) {
        return {
          entries,
          status: 'CRASHED',
          message: `gateway exited (${child.exitCode ?? child.signalCode})`,
          seconds: 0,
          peakMiB: NaN,
        };
      }
      const res = await fetch(`${url}/api/pull/sys/docker/${tag}/`, {
        method: 'POST',
        headers: { authentication: 'good:root:root::0:0' },
      });
      rec = (await res.json()) as Record<string, unknown>;
      await new Promise((r) => setTimeout(r, 250));
    }
    const seconds = (performance.now() - started) / 1000;
    return {
      entries,
      status: String(rec.status),
      message: String(rec.status_message),
      seconds,
      peakMiB: await peakRssMiB(child.pid!),
    };
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const rootAt = args.indexOf('--root');
  const root = resolve(rootAt >= 0 ? args.splice(rootAt, 2)[1] : join(import.meta.dirname, '..', '..'));
  const counts = args.length > 0 ? args.map(Number) : [1e4, 1e5, 1e6];
  const reg = await startRegistry();
  try {
    process.stdout.write(`gateway: ${root}\n`);
    for (const n of counts) {
      const layer = await emptyFilesLayer(n);
      const tag = `bench/rss:${n}`;
      await pushImage(reg.url, 'bench/rss', String(n), { layers: [layer], config: imageConfig({}) });
      const r = await pullOnce(root, reg.url, tag, n);
      process.stdout.write(
        `${String(n).padStart(9)} entries  ${(layer.length / 1e6).toFixed(1).padStart(6)} MB blob  ` +
          `${r.status.padEnd(8)} ${r.seconds.toFixed(1).padStart(6)} s  ` +
          `peak RSS ${r.peakMiB.toFixed(0).padStart(5)} MiB` +
          `${r.status === 'READY' ? '' : `  (${r.message})`}\n`,
      );
    }
  } finally {
    await reg.stop();
  }
}

await main();
