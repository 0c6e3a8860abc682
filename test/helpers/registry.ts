/**
 * A private Docker registry (Debian's `docker-registry`, distribution 2.8) for one test file, plus
 * helpers that push hand-made images through the registry HTTP API (no Docker engine needed).
 *
 *   const reg = await startRegistry();                                  // no auth
 *   const reg = await startRegistry({ auth: { htpasswd: { username, password } } });
 *   const reg = await startRegistry({ auth: { token: tokenServer } });  // see token-server.ts
 *   const reg = await startRegistry({ tls: true });   // https, self-signed; reg.caFile trusts it
 *   reg.url   // http://127.0.0.1:PORT (https:// with tls)      reg.host  // 127.0.0.1:PORT
 *   const layer = gzipSync(await tarLayer([{ name: 'etc/hello', content: 'hi\n' }]));
 *   const { manifestDigest } = await pushImage(reg.url, 'team/app', '1.0',
 *     { layers: [layer], config: { config: { Env: ['A=1'] } }, manifestMediaType: 'docker', auth });
 *   await pushIndex(reg.url, 'team/app', 'multi',
 *     [{ ...amd64Push, platform: { os: 'linux', architecture: 'amd64' } }], 'oci', auth);
 *   await reg.stop();   // kills exactly the registry it started, removes its storage
 *
 * Each registry runs with its OWN config.yml (Debian's default enables htpasswd on a directory),
 * storage in a mkdtemp dir, on a free loopback port; it answers with a per-instance header, so
 * a port taken by someone else in the meantime is never mistaken for ours. The TLS certificate
 * is valid for 127.0.0.1, localhost and registry.test (the name tests use through a proxy). `auth`
 * for the push helpers is `{ username, password }`; they answer a Bearer challenge with a push token
 * from its realm and a Basic challenge with Basic credentials.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tar from 'tar-stream';
import type { TokenServer } from './token-server.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface StartRegistryOptions {
  auth?: { htpasswd: Credentials } | { token: TokenServer };
  /** Serve https with a self-signed certificate (see RunningRegistry.caFile). */
  tls?: boolean;
}

export interface RunningRegistry {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  /** With tls: the PEM certificate to trust. */
  caFile?: string;
  stop(): Promise<void>;
}

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A free loopback TCP port (closed again, so there is a small race; startRegistry retries). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** PEM CAs the push helpers trust, by registry origin. */
const trusted = new Map<string, string>();

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A small HTTP(S) client for the helpers (fetch cannot trust a per-registry CA on Node 20). */
function call(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<Answer> {
  const u = new URL(url);
  const ca = trusted.get(u.origin);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      { method: init.method ?? 'GET', headers: init.headers ?? {}, agent: false, ...(ca ? { ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(30_000, () => req.destroy(new Error(`no answer from ${url} in 30 s`)));
    req.on('error', reject);
    req.end(init.body);
  });
}

function registryConfig(dir: string, port: number, auth: string, nonce: string, tls: boolean): string {
  return `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${join(dir, 'data')}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: ${randomBytes(16).toString('hex')}
  headers:
    X-Shifter-Test-Registry: [${nonce}]
${tls ? `  tls:\n    certificate: ${join(dir, 'tls.crt')}\n    key: ${join(dir, 'tls.key')}\n` : ''}${auth}`;
}

async function authSection(dir: string, auth: StartRegistryOptions['auth']): Promise<string> {
  if (auth === undefined) return '';
  if ('htpasswd' in auth) {
    const line = execFileSync('htpasswd', ['-Bbn', auth.htpasswd.username, auth.htpasswd.password], {
      encoding: 'utf8',
    });
    const file = join(dir, 'htpasswd');
    await writeFile(file, line.trim() + '\n');
    return `auth:\n  htpasswd:\n    realm: shifter-test\n    path: ${file}\n`;
  }
  const t = auth.token;
  return `auth:\n  token:\n    realm: ${t.realm}\n    service: ${t.service}\n    issuer: ${t.issuer}\n    rootcertbundle: ${t.certFile}\n`;
}

async function waitForRegistry(url: string, nonce: string, child: ChildProcess, log: () => string): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    try {
      const res = await call(`${url}/v2/`);
      if (res.headers['x-shifter-test-registry'] !== nonce) return false;
      if (res.status === 200 || res.status === 401) return true;
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  throw new Error(`docker-registry did not answer ${url}/v2/ within 15 s: ${log()}`);
}

function makeCertificate(dir: string): void {
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      join(dir, 'tls.key'),
      '-out',
      join(dir, 'tls.crt'),
      '-subj',
      '/CN=shifter-test-registry',
      '-days',
      '2',
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:registry.test',
    ],
    { stdio: 'ignore' },
  );
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<RunningRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'registry-'));
  const auth = await authSection(dir, opts.auth);
  const tls = opts.tls === true;
  if (tls) makeCertificate(dir);
  const caFile = tls ? join(dir, 'tls.crt') : undefined;
  const ca = caFile ? await readFile(caFile, 'utf8') : undefined;
  let lastLog = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const config = join(dir, 'config.yml');
    const nonce = randomBytes(8).toString('hex');
    await writeFile(config, registryConfig(dir, port, auth, nonce, tls));
    let log = '';
    const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      log = (log + d).slice(-4000);
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
    if (ca) trusted.set(url, ca);
    if (await waitForRegistry(url, nonce, child, () => log)) {
      return {
        url,
        host: `127.0.0.1:${port}`,
        ...(caFile ? { caFile } : {}),
        async stop() {
          trusted.delete(url);
          if (child.exitCode === null && child.signalCode === null) {
            process.kill(child.pid!, 'SIGTERM');
            const timer = setTimeout(() => {
              if (child.exitCode === null) process.kill(child.pid!, 'SIGKILL');
            }, 5000);
            await exited;
            clearTimeout(timer);
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    if (child.exitCode === null && child.signalCode === null) {
      process.kill(child.pid!, 'SIGKILL');
      await exited;
    }
    trusted.delete(url);
    lastLog = log;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`docker-registry failed to start 5 times: ${lastLog}`);
}

/** An HTTP call that answers the registry's auth challenge (Bearer token with pull+push, or Basic). */
async function authedCall(
  url: string,
  init: { method: string; headers?: Record<string, string>; body?: Buffer },
  repo: string,
  auth: Credentials | undefined,
): Promise<Answer> {
  // A body is never sent unauthenticated to learn the challenge: a registry answering 401 before it
  // has read the body resets the connection mid-upload (write ECONNRESET on a loaded machine).
  // `GET /v2/` asks for the same credentials and has no body.
  const uploads = init.body !== undefined && auth !== undefined;
  const first = uploads ? await call(new URL('/v2/', url).href, { method: 'GET' }) : await call(url, init);
  if (first.status !== 401 || auth === undefined) return uploads ? call(url, init) : first;
  const challenge = String(first.headers['www-authenticate'] ?? '');
  const basic = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  let authorization = basic;
  if (/^bearer/i.test(challenge)) {
    const params = Object.fromEntries([...challenge.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const tokenUrl = new URL(params.realm);
    if (params.service) tokenUrl.searchParams.set('service', params.service);
    tokenUrl.searchParams.set('scope', `repository:${repo}:pull,push`);
    const tr = await call(tokenUrl.href, { headers: { authorization: basic } });
    if (tr.status !== 200) throw new Error(`token server refused ${auth.username}: HTTP ${tr.status}`);
    authorization = `Bearer ${(JSON.parse(tr.body.toString('utf8')) as { token: string }).token}`;
  }
  return call(url, { ...init, headers: { ...init.headers, authorization } });
}

/** Uploads a blob (monolithic POST + PUT) and returns its digest. */
export async function pushBlob(registryUrl: string, repo: string, data: Buffer, auth?: Credentials): Promise<string> {
  const digest = sha256(data);
  const start = await authedCall(
    `${registryUrl}/v2/${repo}/blobs/uploads/`,
    { method: 'POST', headers: { 'content-length': '0' } },
    repo,
    auth,
  );
  if (start.status !== 202)
    throw new Error(`starting a blob upload to ${repo} failed: HTTP ${start.status} ${start.body.toString()}`);
  const location = new URL(String(start.headers.location), registryUrl);
  location.searchParams.set('digest', digest);
  const put = await authedCall(
    location.href,
    {
      method: 'PUT',
      body: data,
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(data.length) },
    },
    repo,
    auth,
  );
  if (put.status !== 201)
    throw new Error(`uploading blob ${digest} to ${repo} failed: HTTP ${put.status} ${put.body.toString()}`);
  return digest;
}

/** Uploads a manifest or index under a tag or digest and returns its digest. */
export async function pushManifest(
  registryUrl: string,
  repo: string,
  reference: string,
  body: string | Buffer,
  mediaType: string,
  auth?: Credentials,
): Promise<string> {
  const bytes = Buffer.from(body);
  const res = await authedCall(
    `${registryUrl}/v2/${repo}/manifests/${reference}`,
    {
      method: 'PUT',
      body: bytes,
      headers: { 'content-type': mediaType, 'content-length': String(bytes.length) },
    },
    repo,
    auth,
  );
  if (res.status !== 201)
    throw new Error(`pushing manifest ${repo}:${reference} failed: HTTP ${res.status} ${res.body.toString()}`);
  return sha256(bytes);
}

export interface PushImageOptions {
  /** Layer blobs exactly as they should be stored (already compressed). */
  layers: Buffer[];
  /** Default: gzip layers of the manifest's flavour. */
  layerMediaType?: string;
  /** The image config JSON, e.g. { architecture: 'amd64', os: 'linux', config: { Env: [...] }, rootfs: {...} }. */
  config: object;
  /** Default 'oci'. */
  manifestMediaType?: 'oci' | 'docker';
  auth?: Credentials;
}

export interface PushedImage {
  manifestDigest: string;
  manifestSize: number;
  manifestMediaType: string;
  configDigest: string;
  layerDigests: string[];
}

export async function pushImage(
  registryUrl: string,
  repo: string,
  tag: string,
  opts: PushImageOptions,
): Promise<PushedImage> {
  const oci = (opts.manifestMediaType ?? 'oci') === 'oci';
  const layerType = opts.layerMediaType ?? (oci ? MEDIA.ociLayerGzip : MEDIA.dockerLayerGzip);
  const layers = [];
  for (const data of opts.layers) {
    layers.push({
      mediaType: layerType,
      digest: await pushBlob(registryUrl, repo, data, opts.auth),
      size: data.length,
    });
  }
  const configBytes = Buffer.from(JSON.stringify(opts.config));
  const configDigest = await pushBlob(registryUrl, repo, configBytes, opts.auth);
  const manifestMediaType = oci ? MEDIA.ociManifest : MEDIA.dockerManifest;
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: manifestMediaType,
    config: { mediaType: oci ? MEDIA.ociConfig : MEDIA.dockerConfig, digest: configDigest, size: configBytes.length },
    layers,
  });
  const manifestDigest = await pushManifest(registryUrl, repo, tag, manifest, manifestMediaType, opts.auth);
  return {
    manifestDigest,
    manifestSize: Buffer.byteLength(manifest),
    manifestMediaType,
    configDigest,
    layerDigests: layers.map((l) => l.digest),
  };
}

export interface IndexEntry {
  manifestDigest: string;
  manifestSize: number;
  manifestMediaType: string;
  platform: { os: string; architecture: string; variant?: string };
}

/** Pushes a manifest list ('docker') or OCI index ('oci') of already-pushed images. */
export async function pushIndex(
  registryUrl: string,
  repo: string,
  tag: string,
  entries: IndexEntry[],
  flavour: 'oci' | 'docker',
  auth?: Credentials,
): Promise<string> {
  const mediaType = flavour === 'oci' ? MEDIA.ociIndex : MEDIA.dockerList;
  const body = JSON.stringify({
    schemaVersion: 2,
    mediaType,
    manifests: entries.map((e) => ({
      mediaType: e.manifestMediaType,
      digest: e.manifestDigest,
      size: e.manifestSize,
      platform: e.platform,
    })),
  });
  return pushManifest(registryUrl, repo, tag, body, mediaType, auth);
}

export interface TarEntry {
  name: string;
  content?: string | Buffer;
  type?: 'file' | 'directory' | 'symlink';
  linkname?: string;
  mode?: number;
}

/** An uncompressed tar layer (gzip it with zlib.gzipSync, or zstd it with the zstd CLI). */
export async function tarLayer(entries: TarEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    pack.on('end', resolve);
    pack.on('error', reject);
  });
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = {
      name: e.name,
      type,
      mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644),
      mtime: new Date(0),
      ...(e.linkname ? { linkname: e.linkname } : {}),
    };
    if (type === 'file') pack.entry(header, Buffer.from(e.content ?? ''));
    else pack.entry(header);
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** zstd-compresses with the zstd CLI (Node 20 has no zstd in zlib). */
export function zstdCompress(data: Buffer): Buffer {
  return execFileSync('zstd', ['-q', '-c', '-3'], { input: data, maxBuffer: 1 << 30 });
}

/** An image config with the usual fields, for pushImage. */
export function imageConfig(config: Record<string, unknown>, architecture = 'amd64'): object {
  return { architecture, os: 'linux', config, rootfs: { type: 'layers', diff_ids: [] } };
}
