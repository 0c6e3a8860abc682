/**
 * Time to fail a pull against a registry that accepts connections and never answers, with the
 * gateway's default timeouts and PullDeadline, next to a normal pull's time:
 *   1. a silent plain-http registry, 2. a silent https registry (the TLS handshake never ends),
 *   3. a normal pull alone, 4. a normal pull queued right after two pulls of the silent registry,
 *      with WorkerThreads 2 and RegistryConcurrency 1 (the default) and 2 (one registry may take
 *      every worker).
 * Everything runs on loopback: the real gateway (mock auth), a real docker-registry, a silent port.
 * Run (as root): npx tsc -p tsconfig.json && node dist/bench/silent-registry.js
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startFaultyRegistry } from '../test/helpers/faulty-registry.js';
import { startGateway, type RunningGateway } from '../test/helpers/gateway.js';
import { imageConfig, pushImage, startRegistry, tarLayer } from '../test/helpers/registry.js';

const AUTH = { authentication: 'good:bench:bench::1000:100' };

interface Outcome {
  status: string;
  message: string;
  seconds: number;
}

/** Pulls `tag` by polling as shifterimg does (every 0.5 s) until READY or FAILURE. */
async function timedPull(gw: RunningGateway, tag: string): Promise<Outcome> {
  const started = Date.now();
  for (;;) {
    const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, { method: 'POST', headers: AUTH });
    const rec = (await res.json()) as { status?: string; status_message?: string; error?: string };
    const status = rec.status ?? `HTTP ${res.status}`;
    if (status === 'READY' || status === 'FAILURE' || !res.ok) {
      return { status, message: rec.status_message ?? rec.error ?? '', seconds: (Date.now() - started) / 1000 };
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

function show(what: string, o: Outcome): void {
  process.stdout.write(
    `${what.padEnd(62)} ${o.seconds.toFixed(1).padStart(6)} s  ${o.status}: ${o.message.slice(0, 110)}\n`,
  );
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-silent-'));
  const registry = await startRegistry();
  const silent = await startFaultyRegistry('silent');
  const gateways: RunningGateway[] = [];
  try {
    const layer = gzipSync(await tarLayer([{ name: 'etc/hello', content: 'hello\n' }]));
    await pushImage(registry.url, 'bench/ok', '1', { layers: [layer], config: imageConfig({}) });
    const start = async (name: string, extra: Record<string, unknown>) => {
      const base = join(dir, name);
      const gw = await startGateway({
        dir,
        timeoutMs: 60_000,
        config: {
          CacheDirectory: join(base, 'cache'),
          ExpandDirectory: join(base, 'expand'),
          Authentication: 'mock',
          WorkerThreads: 2,
          DefaultImageLocation: registry.host,
          Locations: {
            [registry.host]: { url: registry.url },
            [silent.host]: { url: silent.url },
            [`localhost:${silent.port}`]: { url: `https://localhost:${silent.port}` },
          },
          Platforms: { sys: { accesstype: 'local', local: { imageDir: join(base, 'images') } } },
          ...extra,
        },
      });
      gateways.push(gw);
      return gw;
    };

    const gw = await start('defaults', {});
    show('1. silent registry, plain http (defaults)', await timedPull(gw, `${silent.host}/bench/x:1`));
    show('2. silent registry, https (defaults)', await timedPull(gw, `localhost:${silent.port}/bench/x:2`));
    show('3. normal pull alone', await timedPull(gw, `${registry.host}/bench/ok:1`));

    for (const concurrency of [1, 2]) {
      const g = await start(`concurrency-${concurrency}`, { RegistryConcurrency: concurrency });
      const stalled = [timedPull(g, `${silent.host}/bench/a:1`), timedPull(g, `${silent.host}/bench/b:1`)];
      await new Promise((r) => setTimeout(r, 1000));
      show(
        `4. normal pull behind 2 silent ones, RegistryConcurrency ${concurrency}`,
        await timedPull(g, `${registry.host}/bench/ok:1`),
      );
      const failed = await Promise.all(stalled);
      show(
        `   the 2 silent pulls, RegistryConcurrency ${concurrency} (last to fail)`,
        failed.reduce((a, b) => (a.seconds > b.seconds ? a : b)),
      );
    }
  } finally {
    for (const g of gateways) await g.stop();
    await silent.stop();
    await registry.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`silent-registry bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
