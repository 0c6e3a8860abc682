/** Blob downloads through a misbehaving proxy: resume, corruption, redirects, stalls, cache reuse. */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ShifterError } from '../../../common/errors.js';
import { RegistryClient } from '../../../gateway/registry/client.js';
import { BlobCache } from '../../../gateway/registry/blob-cache.js';
import { fetchLayers, type FetchProgress } from '../../../gateway/registry/fetch-layers.js';
import type { LayerDescriptor } from '../../../gateway/registry/manifest.js';
import type { RegistryClientOptions, RegistryEndpoint } from '../../../gateway/registry/endpoint.js';
import { freePort, imageConfig, pushImage, startRegistry, type RunningRegistry } from '../../helpers/registry.js';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';

const log = pino({ level: 'silent' });
const creds = { username: 'bob', password: 'bob-pw' };
const LAYER_SIZE = 3 * 1024 * 1024 + 17;

let reg: RunningRegistry;
let proxy: FlakyProxy;
const dirs: string[] = [];
let nextRepo = 0;

test.before(async () => {
  reg = await startRegistry({ auth: { htpasswd: creds } });
  proxy = await startFlakyProxy(reg.url);
});

test.after.always(async () => {
  await proxy?.stop();
  await reg?.stop();
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function newCache(): Promise<BlobCache> {
  const d = await mkdtemp(join(tmpdir(), 'blob-cache-test-'));
  dirs.push(d);
  await mkdir(join(d, 'sha256'));
  return new BlobCache(d);
}

/** A fresh repository with one image of `count` random (incompressible) layers. */
async function image(count = 1): Promise<{ repo: string; layers: LayerDescriptor[]; data: Buffer[] }> {
  const repo = `blobs/r${nextRepo++}`;
  const data = Array.from({ length: count }, () => randomBytes(LAYER_SIZE));
  await pushImage(reg.url, repo, 'v', { layers: data, config: imageConfig({}), auth: creds });
  const layers = (await client().resolve(repo, 'v')).layers;
  return { repo, layers, data };
}

function client(e: Partial<RegistryEndpoint> = {}, o: RegistryClientOptions = {}): RegistryClient {
  return new RegistryClient({ baseUrl: proxy.url, authMethod: 'basic', credentials: creds, ...e }, log, {
    attempts: 4,
    backoffMs: 20,
    ...o,
  });
}

const blobGets = (repo: string, layer: LayerDescriptor) =>
  proxy.requests.filter((r) => r.method === 'GET' && r.url === `/v2/${repo}/blobs/${layer.digest}`);

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test.serial('a connection dropped mid-blob is resumed with a Range request and the blob verifies', async (t) => {
  const { repo, layers } = await image();
  const layer = layers[0];
  const cache = await newCache();
  proxy.dropBlobBodies(2, 1024 * 1024);
  let bytes = 0;
  const path = await client().fetchBlob(repo, layer, cache, (n) => {
    bytes += n;
  });
  t.is(sha(await readFile(path)), layer.digest);
  t.is(bytes, layer.size);
  const gets = blobGets(repo, layer);
  t.is(gets.length, 3);
  t.is(gets[0].headers.range, undefined);
  // The client resumes from what it had written; bytes still in flight when the socket died are lost.
  const starts = gets.slice(1).map((g) => Number(/^bytes=(\d+)-$/.exec(String(g.headers.range))?.[1]));
  t.true(starts[0] > 0 && starts[0] <= 1024 * 1024, `first resume at ${starts[0]}`);
  t.true(starts[1] > starts[0] && starts[1] <= starts[0] + 1024 * 1024, `second resume at ${starts[1]}`);
  t.deepEqual(
    await readdir(join(cache.dir, 'sha256')),
    [layer.digest.slice(7), `${layer.digest.slice(7)}.sources`],
    'no temporary file is left, only the blob and where it came from',
  );
});

test.serial('a server that ignores Range gets a full download instead', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  proxy.ignoreRange(true);
  proxy.dropBlobBodies(1, 1024 * 1024);
  let bytes = 0;
  try {
    const path = await client().fetchBlob(repo, layers[0], cache, (n) => {
      bytes += n;
    });
    t.is(sha(await readFile(path)), layers[0].digest);
  } finally {
    proxy.ignoreRange(false);
  }
  t.is(bytes, layers[0].size, 'discarded bytes are subtracted from progress');
  t.regex(String(blobGets(repo, layers[0])[1].headers.range), /^bytes=\d+-$/, 'the client asked for a range');
});

test.serial('a transfer that stalls three times times out and resumes each time', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  // A body that stalls after an answer is not a silent host: it gets every attempt (4 here), not two.
  proxy.stallBlobBodies(3, 4096);
  const started = Date.now();
  const path = await client({}, { idleTimeoutMs: 700 }).fetchBlob(repo, layers[0], cache);
  t.is(sha(await readFile(path)), layers[0].digest);
  t.true(Date.now() - started < 20_000);
  const ranges = blobGets(repo, layers[0]).map((g) => g.headers.range);
  t.deepEqual(ranges, [undefined, 'bytes=4096-', 'bytes=8192-', 'bytes=12288-']);
});

test.serial('a corrupted blob is DIGEST_MISMATCH naming the digest, and nothing is left in the cache', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  proxy.corruptBlobBodies(10);
  try {
    const err = await t.throwsAsync(client().fetchBlob(repo, layers[0], cache), { instanceOf: ShifterError });
    t.is(err?.code, 'DIGEST_MISMATCH');
    t.true(err?.message.includes(layers[0].digest));
  } finally {
    proxy.corruptBlobBodies(0);
  }
  t.false(await cache.has(layers[0].digest));
  t.deepEqual(await readdir(join(cache.dir, 'sha256')), []);
});

test.serial('a redirect to another host/port does not carry the Authorization header', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  proxy.redirectBlobs(true);
  proxy.clearLog();
  try {
    const path = await client().fetchBlob(repo, layers[0], cache);
    t.is(sha(await readFile(path)), layers[0].digest);
  } finally {
    proxy.redirectBlobs(false);
  }
  const redirected = proxy.requests.filter((r) => r.status === 307);
  t.is(redirected.length, 1);
  t.truthy(redirected[0].headers.authorization, 'the registry itself got the credentials');
  t.is(proxy.storageRequests.length, 1);
  t.is(proxy.storageRequests[0].headers.authorization, undefined);
});

test.serial('the cache is reused: a second fetch makes no blob request', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  const first = await client().fetchBlob(repo, layers[0], cache);
  const count = blobGets(repo, layers[0]).length;
  t.is(count, 1);
  const second = await client().fetchBlob(repo, layers[0], new BlobCache(cache.dir));
  t.is(second, first);
  t.is(blobGets(repo, layers[0]).length, count);
});

const blobHeads = (repo: string, layer: LayerDescriptor) =>
  proxy.requests.filter((r) => r.method === 'HEAD' && r.url === `/v2/${repo}/blobs/${layer.digest}`);

test.serial('a cached blob with no record of its source is downloaded again once; then a HEAD is enough', async (t) => {
  const { repo, layers, data } = await image();
  const cache = await newCache();
  const hex = layers[0].digest.slice(7);
  await writeFile(join(cache.dir, 'sha256', hex), data[0]);
  await client().fetchBlob(repo, layers[0], cache);
  t.is(blobGets(repo, layers[0]).length, 1, 'a digest alone proves nothing: the registry must send the content');
  t.deepEqual(JSON.parse(await readFile(join(cache.dir, 'sha256', `${hex}.sources`), 'utf8')), [
    { registry: proxy.url, repository: repo, anonymous: false },
  ]);
  await client().fetchBlob(repo, layers[0], cache);
  t.is(blobGets(repo, layers[0]).length, 1);
  t.deepEqual(
    blobHeads(repo, layers[0]).map((r) => r.status),
    [200],
  );
});

test.serial('a cached blob that another repository does not serve is NOT_FOUND there, not handed out', async (t) => {
  const { repo, layers } = await image();
  const other = await image();
  const cache = await newCache();
  await client().fetchBlob(repo, layers[0], cache);
  const err = await t.throwsAsync(client().fetchBlob(other.repo, layers[0], cache), { instanceOf: ShifterError });
  t.is(err?.code, 'NOT_FOUND');
  t.regex(err?.message ?? '', new RegExp(`blob ${layers[0].digest} of ${other.repo} not found`));
  t.deepEqual(
    blobHeads(other.repo, layers[0]).map((r) => r.status),
    [404],
  );
  t.deepEqual(
    blobGets(other.repo, layers[0]).map((r) => r.status),
    [404],
  );
});

test.serial('a cached blob whose registry cannot be reached for the check fails the pull as UNREACHABLE', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  const own = await startFlakyProxy(reg.url);
  const viaOwn = () => client({ baseUrl: own.url }, { connectTimeoutMs: 2000 });
  try {
    await viaOwn().fetchBlob(repo, layers[0], cache);
  } finally {
    await own.stop();
  }
  const err = await t.throwsAsync(viaOwn().fetchBlob(repo, layers[0], cache), { instanceOf: ShifterError });
  t.is(err?.code, 'UNREACHABLE');
});

test.serial('two concurrent fetches of one blob share a single download', async (t) => {
  const { repo, layers } = await image();
  const cache = await newCache();
  const c = client();
  const [a, b] = await Promise.all([c.fetchBlob(repo, layers[0], cache), client().fetchBlob(repo, layers[0], cache)]);
  t.is(a, b);
  t.is(blobGets(repo, layers[0]).length, 1);
});

test.serial(
  'a shared download cancelled by the pull that started it does not fail the other pull waiting on it',
  async (t) => {
    const { repo, layers, data } = await image();
    const cache = await newCache();
    const c = client();
    const cancelled = new AbortController();
    const first = c.fetchBlob(repo, layers[0], cache, undefined, cancelled.signal);
    const second = c.fetchBlob(repo, layers[0], cache);
    cancelled.abort();
    const err = await first.then(
      () => null,
      (e: unknown) => e,
    );
    t.is((err as Error | null)?.name, 'AbortError');
    const path = await second;
    t.true((await readFile(path)).equals(data[0]));
  },
);

test.serial('fetchLayers downloads concurrently, in order, with progress that adds up', async (t) => {
  const { repo, layers, data } = await image(4);
  const cache = await newCache();
  proxy.dropBlobBodies(1, 5000);
  const seen: FetchProgress[] = [];
  const paths = await fetchLayers(client(), repo, layers, cache, { concurrency: 3, onProgress: (p) => seen.push(p) });
  t.deepEqual(
    paths,
    layers.map((l) => cache.pathFor(l.digest)),
  );
  for (let i = 0; i < 4; i++) t.true((await readFile(paths[i])).equals(data[i]));
  const last = seen[seen.length - 1];
  t.deepEqual(last, { layersDone: 4, layersTotal: 4, bytesDone: 4 * LAYER_SIZE, bytesTotal: 4 * LAYER_SIZE });
  t.true(seen.every((p, i) => i === 0 || p.layersDone >= seen[i - 1].layersDone));
});

test.serial('an anonymous pull through http_proxy reaches the registry by name via the proxy', async (t) => {
  const anon = await startRegistry();
  const fwd = await startFlakyProxy(anon.url);
  try {
    const data = randomBytes(100_000);
    const pushed = await pushImage(anon.url, 'via/proxy', 'v', {
      layers: [data],
      config: imageConfig({ Env: ['X=1'] }),
    });
    const port = new URL(anon.url).port;
    const c = new RegistryClient({ baseUrl: `http://registry.test:${port}`, authMethod: 'token' }, log, {
      env: { http_proxy: fwd.url },
    });
    const img = await c.resolve('via/proxy', 'v');
    t.is(img.manifestDigest, pushed.manifestDigest);
    const path = await c.fetchBlob('via/proxy', img.layers[0], await newCache());
    t.true((await readFile(path)).equals(data));
    t.true(fwd.requests.length >= 3);
    t.true(fwd.requests.every((r) => r.url.startsWith(`http://registry.test:${port}/v2/via/proxy/`)));
  } finally {
    await fwd.stop();
    await anon.stop();
  }
});

test('an unreachable registry is UNREACHABLE naming the URL', async (t) => {
  const port = await freePort();
  const c = new RegistryClient({ baseUrl: `http://127.0.0.1:${port}`, authMethod: 'token' }, log, {
    attempts: 2,
    backoffMs: 10,
  });
  const err = await t.throwsAsync(c.resolve('a/b', 'v'), { instanceOf: ShifterError });
  t.is(err?.code, 'UNREACHABLE');
  t.true(err?.message.includes(`http://127.0.0.1:${port}/v2/a/b/manifests/v`));
  t.regex(err?.message ?? '', /ECONNREFUSED/);
});

test('https: a private CA file is trusted, its absence is a clear UNREACHABLE, and https_proxy tunnels with CONNECT', async (t) => {
  const secure = await startRegistry({ tls: true });
  const tunnel = await startFlakyProxy(secure.url);
  try {
    const data = randomBytes(200_000);
    const pushed = await pushImage(secure.url, 'tls/app', 'v', { layers: [data], config: imageConfig({}) });
    const direct = new RegistryClient({ baseUrl: secure.url, authMethod: 'token', caFile: secure.caFile! }, log);
    t.is((await direct.resolve('tls/app', 'v')).manifestDigest, pushed.manifestDigest);

    const untrusted = new RegistryClient({ baseUrl: secure.url, authMethod: 'token' }, log);
    const started = Date.now();
    const err = await t.throwsAsync(untrusted.resolve('tls/app', 'v'), { instanceOf: ShifterError });
    t.is(err?.code, 'UNREACHABLE');
    t.regex(
      err?.message ?? '',
      /cannot verify the TLS certificate of 127\.0\.0\.1:\d+ \(self[- ]signed certificate.*set the sslcacert/i,
    );
    t.true(Date.now() - started < 2000, 'an untrusted certificate is not retried');

    const port = new URL(secure.url).port;
    const proxied = new RegistryClient(
      { baseUrl: `https://registry.test:${port}`, authMethod: 'token', caFile: secure.caFile! },
      log,
      { env: { https_proxy: tunnel.url, http_proxy: 'http://127.0.0.1:1' } },
    );
    const img = await proxied.resolve('tls/app', 'v');
    t.is(img.manifestDigest, pushed.manifestDigest);
    t.true((await readFile(await proxied.fetchBlob('tls/app', img.layers[0], await newCache()))).equals(data));
    t.true(tunnel.requests.length >= 1);
    t.true(tunnel.requests.every((r) => r.method === 'CONNECT' && r.url === `registry.test:${port}`));
  } finally {
    await tunnel.stop();
    await secure.stop();
  }
});

test.serial('a manifest altered in transit is DIGEST_MISMATCH naming both digests', async (t) => {
  const { repo } = await image();
  const pinned = (await client().resolve(repo, 'v')).manifestDigest;
  for (const reference of ['v', pinned]) {
    proxy.corruptManifests(1);
    const err = await t.throwsAsync(client().resolve(repo, reference), { instanceOf: ShifterError });
    t.is(err?.code, 'DIGEST_MISMATCH');
    t.true(err?.message.includes(`should have digest ${pinned} but hashes to sha256:`));
  }
});

test.serial('an aborted download stops promptly, publishes nothing, and the next fetch resumes it', async (t) => {
  const { repo, layers, data } = await image();
  const cache = await newCache();
  proxy.stallBlobBodies(1, 4096);
  const controller = new AbortController();
  const fetching = client({}, { idleTimeoutMs: 30_000 }).fetchBlob(
    repo,
    layers[0],
    cache,
    undefined,
    controller.signal,
  );
  // Abort once the bytes before the stall are on disk (a fixed delay is too short on a loaded machine).
  const partial = join(cache.dir, 'sha256', `.partial-${layers[0].digest.slice(7)}`);
  for (
    let i = 0;
    i < 200 &&
    (await stat(partial).then(
      (s) => s.size,
      () => 0,
    )) < 4096;
    i++
  ) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const started = Date.now();
  controller.abort(new Error('pull cancelled by the test'));
  await t.throwsAsync(fetching, { message: 'pull cancelled by the test' });
  proxy.stallBlobBodies(0);
  t.true(Date.now() - started < 5000);
  t.false(await cache.has(layers[0].digest));
  t.deepEqual(await readdir(join(cache.dir, 'sha256')), [`.partial-${layers[0].digest.slice(7)}`]);
  const path = await client().fetchBlob(repo, layers[0], cache);
  t.true((await readFile(path)).equals(data[0]));
  t.is(blobGets(repo, layers[0]).at(-1)!.headers.range, 'bytes=4096-');
});

test.serial('a partial left by an earlier gateway resumes with Range; open() removes temp files', async (t) => {
  const { repo, layers, data } = await image();
  const dir = (await newCache()).dir;
  const hex = layers[0].digest.slice(7);
  // What a kill -9 leaves: a partial download and a temp file of an interrupted commit.
  await writeFile(join(dir, 'sha256', `.partial-${hex}`), data[0].subarray(0, 100_000));
  await writeFile(join(dir, 'sha256', `.tmp-${hex}.0123456789ab`), 'half');
  const old = join(dir, 'sha256', `.partial-${'e'.repeat(64)}`);
  await writeFile(old, 'abandoned two days ago');
  await utimes(old, new Date(Date.now() - 48 * 3600_000), new Date(Date.now() - 48 * 3600_000));
  const cache = new BlobCache(dir);
  t.deepEqual((await cache.open()).sort(), [`.partial-${'e'.repeat(64)}`, `.tmp-${hex}.0123456789ab`]);
  let bytes = 0;
  const path = await client().fetchBlob(repo, layers[0], cache, (n) => {
    bytes += n;
  });
  t.true((await readFile(path)).equals(data[0]));
  t.is(bytes, layers[0].size, 'the resumed prefix counts as progress');
  t.deepEqual(
    blobGets(repo, layers[0]).map((g) => g.headers.range),
    ['bytes=100000-'],
  );
  t.deepEqual(await readdir(join(dir, 'sha256')), [hex, `${hex}.sources`]);
});

test.serial('a partial download that does not verify is discarded, not resumed again', async (t) => {
  const { repo, layers, data } = await image();
  const cache = await newCache();
  const partial = join(cache.dir, 'sha256', `.partial-${layers[0].digest.slice(7)}`);
  const wrong = Buffer.from(data[0].subarray(0, 50_000));
  wrong[10] ^= 0xff;
  await writeFile(partial, wrong);
  const err = await t.throwsAsync(client().fetchBlob(repo, layers[0], cache), { instanceOf: ShifterError });
  t.is(err?.code, 'DIGEST_MISMATCH');
  t.deepEqual(await readdir(join(cache.dir, 'sha256')), []);
  const path = await client().fetchBlob(repo, layers[0], cache);
  t.true((await readFile(path)).equals(data[0]));
});

test.serial('fetchLayers: one corrupt layer fails the pull with DIGEST_MISMATCH and stops the rest', async (t) => {
  const { repo, layers } = await image(3);
  const cache = await newCache();
  proxy.corruptBlobBodies(1);
  const err = await t.throwsAsync(fetchLayers(client(), repo, layers, cache, { concurrency: 1 }), {
    instanceOf: ShifterError,
  });
  proxy.corruptBlobBodies(0);
  t.is(err?.code, 'DIGEST_MISMATCH');
  t.true(err?.message.includes(layers[0].digest));
  t.is(blobGets(repo, layers[1]).length + blobGets(repo, layers[2]).length, 0, 'no further layer was started');
  t.deepEqual(await readdir(join(cache.dir, 'sha256')), []);
});
