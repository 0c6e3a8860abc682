/**
 * Runs the real `bin/shifter-gateway` for a test: writes `config` to `<dir>/imagemanager.json`,
 * listens on 127.0.0.1 (or `listen`'s host) port 0 (the kernel picks a free port; the gateway logs it) and waits
 * until `GET /` answers. Stopped by pid only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/helpers → repo root. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const GATEWAY_BIN = join(ROOT, 'bin', 'shifter-gateway');

export interface RunningGateway {
  url: string;
  pid: number;
  /** Everything the gateway printed so far (pino JSON lines and stderr). */
  logs(): string;
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill9(): Promise<void>;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function waitExit(child: ChildProcess): Promise<number | null> {
  if (!alive(child)) return Promise.resolve(child.exitCode);
  return new Promise((r) => child.once('exit', (code) => r(code)));
}

let started = 0;

export async function startGateway(opts: {
  config: object;
  dir: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** HOST:PORT to listen on (default 127.0.0.1:0), e.g. a bridge address other network namespaces reach. */
  listen?: string;
}): Promise<RunningGateway> {
  // A counter, not the clock: two gateways started in the same millisecond must not share a file.
  const configPath = join(opts.dir, `imagemanager-${process.pid}-${++started}.json`);
  await writeFile(configPath, JSON.stringify(opts.config, null, 2));
  const child = spawn(GATEWAY_BIN, ['--config', configPath, '--listen', opts.listen ?? '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let url: string | null = null;
  while (!url) {
    if (!alive(child))
      throw new Error(`shifter-gateway exited (${child.exitCode ?? child.signalCode}) before listening:\n${out}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`shifter-gateway did not start listening in time:\n${out}`);
    }
    const m = /listening on (http:\/\/[0-9.]+:\d+)/.exec(out);
    if (m) url = m[1]!;
    else await new Promise((r) => setTimeout(r, 50));
  }
  const res = await fetch(`${url}/`);
  if (!res.ok) throw new Error(`GET / answered ${res.status}`);
  return {
    url,
    pid: child.pid!,
    logs: () => out,
    async stop() {
      if (alive(child)) process.kill(child.pid!, 'SIGTERM');
      return waitExit(child);
    },
    async kill9() {
      if (alive(child)) process.kill(child.pid!, 'SIGKILL');
      await waitExit(child);
    },
  };
}

/**
 * The usual test gateway's imagemanager.json: mock authentication, one system `sys` whose images
 * go to `<dir>/images`, and one registry Location `site` (the default) at `registryUrl`.
 */
export function siteGatewayConfig(dir: string, registryUrl: string): object {
  return {
    CacheDirectory: join(dir, 'cache'),
    ExpandDirectory: join(dir, 'expand'),
    Authentication: 'mock',
    DefaultImageLocation: 'site',
    Locations: { site: { url: registryUrl } },
    Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
  };
}
