/**
 * Debian's nginx (nginx-light) as the HTTP cache between nodes and the gateway, for tests: its own
 * prefix directory (config, cache, temp dirs, logs), a free loopback port, `proxy_cache` with
 * `proxy_cache_lock on` (concurrent misses for one URL make one upstream request), started in the
 * foreground and stopped by its pid, the directory removed afterwards. Answers carry
 * `X-Cache-Status` (HIT, MISS, ...) so a test can see which came from the cache. The upstream may
 * be another of these (a per-rack cache in front of a site cache in front of the gateway): the
 * configuration is the one README "Lazy images" gives sites.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { constants } from 'node:fs';
import { access, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './registry.js';

export const NGINX_BIN = '/usr/sbin/nginx';

export interface RunningNginxCache {
  url: string;
  pid: number;
  /** SIGKILL to the master and its worker (a cache host dying), the directory removed. */
  kill(): Promise<void>;
  /** nginx's access log so far: one line per request it answered, with the cache status. */
  accessLog(): Promise<string>;
  stop(): Promise<void>;
}

function config(dir: string, host: string, port: number, upstream: string): string {
  // Workers of a root master would run as nobody, who cannot write the test's cache directory.
  const user = process.getuid?.() === 0 ? 'user root root;' : '';
  return `
${user}
daemon off;
master_process on;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 512; }
http {
  log_format cache '$request_method $request_uri $status $upstream_cache_status';
  access_log ${dir}/access.log cache;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=chunks:8m max_size=1g inactive=1d use_temp_path=off;
  server {
    listen ${host}:${port};
    location / {
      proxy_pass ${upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache chunks;
      # The URI names the bytes (chunks by sha256); the node's token is passed on, not part of the key.
      proxy_cache_key $scheme$proxy_host$request_uri;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 60s;
      proxy_cache_lock_age 60s;
      proxy_cache_revalidate on;
      proxy_cache_valid 200 206 1d;
      # Overloaded or restarting upstreams: passed on as they are (Retry-After included), never cached.
      proxy_next_upstream off;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`;
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Starts nginx caching `upstream` (an http:// origin, also another of these caches: a cache hierarchy is nothing but
 * this configuration), listening on `host` (a bridge address lets other network namespaces reach it). Fails saying
 * what to install when nginx is missing.
 */
export async function startNginxCache(
  upstream: string,
  timeoutMs = 20_000,
  host = '127.0.0.1',
): Promise<RunningNginxCache> {
  try {
    await access(NGINX_BIN, constants.X_OK);
  } catch {
    throw new Error(`${NGINX_BIN} is missing: install Debian's nginx-light (apt-get install nginx-light)`);
  }
  const dir = await mkdtemp(join(tmpdir(), 'nginx-cache-'));
  await mkdir(join(dir, 'tmp'));
  const port = await freePort();
  await writeFile(join(dir, 'nginx.conf'), config(dir, host, port, upstream));
  // A process group of its own, so that kill() reaches the worker too.
  const child = spawn(NGINX_BIN, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'ignore', 'pipe'],
    detached: true,
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + timeoutMs;
  while (!(await accepts(host, port))) {
    const log = await readFile(join(dir, 'error.log'), 'utf8').catch(() => '');
    if (!alive(child) || Date.now() > deadline) {
      if (alive(child)) child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`nginx did not start on ${host}:${port}: ${stderr}${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `http://${host}:${port}`,
    pid: child.pid!,
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    async kill() {
      if (alive(child)) process.kill(-child.pid!, 'SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
    async stop() {
      // SIGTERM is nginx's fast shutdown: the master stops its workers and exits.
      if (alive(child)) process.kill(child.pid!, 'SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
