/**
 * The chunk routes' headers are enough for a standard HTTP cache: nginx (proxy_cache, cache lock)
 * in front of the gateway serves a chunk or an index the second time without asking the gateway,
 * and concurrent first requests for one chunk reach the gateway once. Requests that arrive at the
 * gateway are counted at its HTTP server.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import type { ImageId } from '../../../common/image-descriptor.js';
import { DEFAULT_CHUNK_SIZE } from '../../../gateway/chunks/index-file.js';
import { startNginxCache, type RunningNginxCache } from '../../helpers/nginx-cache.js';
import { ROOT, startApi, type ApiUnderTest } from './api-under-test.js';
import { placeReadyImage } from './ready-image.js';

let api: ApiUnderTest;
let nginx: RunningNginxCache;
let gatewayUrl: string;
const seen: string[] = [];
const id = randomBytes(32).toString('hex') as ImageId;
const bytes = randomBytes(DEFAULT_CHUNK_SIZE * 3);
let auth: Record<string, string>;

test.before(async () => {
  api = await startApi();
  gatewayUrl = await api.app.listen({ host: '127.0.0.1', port: 0 });
  api.app.server.on('request', (req: { url?: string }) => seen.push(req.url ?? ''));
  await placeReadyImage(api, id, bytes);
  nginx = await startNginxCache(gatewayUrl);
  const session = await fetch(`${gatewayUrl}/api/chunks/sys/session`, { method: 'POST', headers: ROOT });
  auth = { authorization: `Bearer ${((await session.json()) as { token: string }).token}` };
});

test.after.always(async () => {
  await nginx?.stop();
  await api?.close();
});

const reached = (path: string) => seen.filter((u) => u === path).length;

async function viaNginx(path: string): Promise<{ status: number; cache: string | null; body: Buffer }> {
  const res = await fetch(`${nginx.url}${path}`, { headers: auth });
  return { status: res.status, cache: res.headers.get('x-cache-status'), body: Buffer.from(await res.arrayBuffer()) };
}

test.serial('a second fetch of a chunk and of the index through nginx does not reach the gateway', async (t) => {
  const indexPath = `/api/chunks/sys/${id}/index`;
  const first = await viaNginx(indexPath);
  t.is(first.status, 200);
  const chunks = (JSON.parse(first.body.toString()) as { chunks: string[] }).chunks;
  const chunkPath = `/api/chunks/sys/${id}/chunk/${chunks[0]}`;
  const a = await viaNginx(chunkPath);
  const b = await viaNginx(chunkPath);
  t.is(a.status, 200);
  t.is(a.cache, 'MISS');
  t.is(b.cache, 'HIT');
  t.true(b.body.equals(bytes.subarray(0, DEFAULT_CHUNK_SIZE)));
  t.is(reached(chunkPath), 1);
  t.is((await viaNginx(indexPath)).cache, 'HIT');
  t.is(reached(indexPath), 1);
  t.regex(await nginx.accessLog(), /GET \/api\/chunks\/sys\/[0-9a-f]+\/chunk\/[0-9a-f]+ 200 HIT/);
});

test.serial('concurrent first fetches of one chunk reach the gateway once (proxy_cache_lock)', async (t) => {
  const index = JSON.parse((await viaNginx(`/api/chunks/sys/${id}/index`)).body.toString()) as { chunks: string[] };
  const chunkPath = `/api/chunks/sys/${id}/chunk/${index.chunks[2]}`;
  const answers = await Promise.all(Array.from({ length: 6 }, () => viaNginx(chunkPath)));
  t.deepEqual(
    answers.map((a) => a.status),
    [200, 200, 200, 200, 200, 200],
  );
  t.true(answers.every((a) => a.body.equals(bytes.subarray(2 * DEFAULT_CHUNK_SIZE))));
  t.is(reached(chunkPath), 1);
});
