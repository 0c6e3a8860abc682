/**
 * Cost of checking cached blobs on a warm pull (gateway/registry/blob-reuse.ts): the layers of an
 * image already in the blob cache, fetched again by a fresh client whose manifest is resolved
 * (so its token is in hand, as in a pull), timed over fetchLayers alone:
 *   - public: the layers came anonymously from this repository: no request, as before the check;
 *   - private: they came with credentials: one `HEAD /v2/<repo>/blobs/<digest>` per layer.
 * A real docker-registry behind a real token server, on loopback (a remote registry adds one
 * round trip per layer, `layerConcurrency` of them at a time).
 * Run (as root): npx tsc -p tsconfig.json && node dist/bench/blob-reuse.js [LAYERS] [ROUNDS]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { BlobCache, fetchLayers, RegistryClient } from '../gateway/registry/index.js';
import { imageConfig, pushImage, startRegistry } from '../test/helpers/registry.js';
import { startTokenServer } from '../test/helpers/token-server.js';

const layerCount = Number(process.argv[2] ?? 20);
const rounds = Number(process.argv[3] ?? 10);
const ALICE = { username: 'alice', password: 'alice-pw' };
const log = pino({ level: 'silent' });

const tokens = await startTokenServer({
  users: { alice: ALICE.password },
  repos: [
    { name: 'public/*', anonymous: ['pull'], users: { alice: ['pull', 'push'] } },
    { name: 'private/*', users: { alice: ['pull', 'push'] } },
  ],
});
const reg = await startRegistry({ auth: { token: tokens } });
const dir = await mkdtemp(join(tmpdir(), 'bench-blob-reuse-'));
try {
  const layers = Array.from({ length: layerCount }, () => randomBytes(64 * 1024));
  const cache = new BlobCache(dir);
  await cache.open();
  const client = (credentials: boolean) =>
    new RegistryClient({ baseUrl: reg.url, authMethod: 'token', ...(credentials ? { credentials: ALICE } : {}) }, log);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  for (const [repo, credentials] of [
    ['public/app', false],
    ['private/app', true],
  ] as const) {
    // Distinct layers per repository, so each is cached from its own repository only.
    const data = layers.map((l) => Buffer.concat([l, Buffer.from(repo)]));
    await pushImage(reg.url, repo, '1', { layers: data, config: imageConfig({}), auth: ALICE });
    const cold = client(credentials);
    await fetchLayers(cold, repo, (await cold.resolve(repo, '1')).layers, cache);
    const times: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const warm = client(credentials);
      const resolved = await warm.resolve(repo, '1');
      const started = process.hrtime.bigint();
      await fetchLayers(warm, repo, resolved.layers, cache);
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    const m = median(times);
    console.log(
      `${repo.padEnd(12)} warm fetchLayers of ${layerCount} cached layers: median ${m.toFixed(1)} ms ` +
        `(${(m / layerCount).toFixed(2)} ms/layer; min ${Math.min(...times).toFixed(1)}, max ${Math.max(...times).toFixed(1)}, ${rounds} rounds)`,
    );
  }
} finally {
  await reg.stop();
  await tokens.stop();
  await rm(dir, { recursive: true, force: true });
}
