/**
 * The lazy cache's routes (gateway/api/chunk-routes.ts) through `inject()`: who may fetch image
 * bytes, the caching headers, chunk bytes against the file, the index an image converted before
 * indexes existed gets on its first request, and the prefetch profile's first-wins round trip.
 * The image file is random bytes: these routes serve a file's bytes, whatever they hold (the real
 * conversion is in test/gateway/service/chunk-index.test.ts).
 */
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { access, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { InjectOptions } from 'fastify';
import { parseChunkIndex, sha256Hex, type ChunkIndex } from '../../../common/chunk-index.js';
import { createNodeTokens } from '../../../gateway/chunks/node-token.js';
import { DEFAULT_CHUNK_SIZE } from '../../../gateway/chunks/index-file.js';
import { ALICE, ROOT, startApi, type ApiUnderTest } from './api-under-test.js';
import { placeReadyImage, READY_META } from './ready-image.js';

let api: ApiUnderTest;
let clock = 1_000_000;
const tokens = createNodeTokens(randomBytes(32), 600, () => clock);
const ID = randomBytes(32).toString('hex');
/** Two and a half chunks: the last one is short. */
const IMAGE = randomBytes(DEFAULT_CHUNK_SIZE * 2 + DEFAULT_CHUNK_SIZE / 2);
let imageDir: string;
let bearer: Record<string, string>;

const readyImage = (id: string, bytes: Buffer) => placeReadyImage(api, id, bytes);

test.before(async () => {
  api = await startApi({}, { tokens });
  imageDir = api.config.platforms.sys.imageDir;
  await readyImage(ID, IMAGE);
  const r = await api.call('POST', '/api/chunks/sys/session', ROOT);
  if (r.status !== 200) throw new Error(`session answered ${r.status}: ${r.text}`);
  bearer = { authorization: `Bearer ${String(r.json.token)}` };
});

test.after.always(async () => {
  await api?.close();
});

const inject = (method: InjectOptions['method'], url: string, headers: Record<string, string> = {}, payload?: string) =>
  api.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload }) });

async function indexOf(id: string): Promise<{ index: ChunkIndex; digest: string }> {
  const info = await api.call('GET', `/api/chunks/sys/${id}`, bearer);
  const digest = String(info.json.indexDigest);
  const res = await inject('GET', `/api/chunks/sys/${id}/index`, bearer);
  return { index: parseChunkIndex(res.rawPayload, digest), digest };
}

test('an ordinary user, no credential and a forged token are refused with a message saying who may', async (t) => {
  const user = await api.call('GET', `/api/chunks/sys/${ID}/index`, ALICE);
  t.is(user.status, 403);
  t.regex(String(user.json.error), /user alice may not download image bytes: only root on a compute node/);
  const userSession = await api.call('POST', '/api/chunks/sys/session', ALICE);
  t.is(userSession.status, 403);
  const none = await api.call('GET', `/api/chunks/sys/${ID}/index`);
  t.is(none.status, 401);
  t.regex(String(none.json.error), /compute nodes only: send a munge credential made by root/);
  const forged = `${bearer.authorization.slice(0, -4)}AAAA`;
  const bad = await api.call('GET', `/api/chunks/sys/${ID}/index`, { authorization: forged });
  t.is(bad.status, 401);
  t.regex(String(bad.json.error), /not one this gateway issued.*POST \/api\/chunks\/sys\/session/);
  const otherSystem = tokens.issue('other').token;
  t.is((await api.call('GET', `/api/chunks/sys/${ID}/index`, { authorization: `Bearer ${otherSystem}` })).status, 401);
});

// Serial: ava runs it before the others, which must not see the clock moved.
test.serial('a token stops working when it expires; a root credential still works per request', async (t) => {
  const { token } = tokens.issue('sys');
  t.is((await api.call('GET', `/api/chunks/sys/${ID}/index`, { authorization: `Bearer ${token}` })).status, 200);
  clock += 601;
  try {
    const late = await api.call('GET', `/api/chunks/sys/${ID}/index`, { authorization: `Bearer ${token}` });
    t.is(late.status, 401);
    t.regex(String(late.json.error), /node token is expired: get a new one/);
    t.is((await api.call('GET', `/api/chunks/sys/${ID}/index`, ROOT)).status, 200);
  } finally {
    clock -= 601;
  }
});

test('the index of an image converted before indexes existed is made on first request and matches the file', async (t) => {
  const id = randomBytes(32).toString('hex');
  const bytes = randomBytes(DEFAULT_CHUNK_SIZE + 17);
  await readyImage(id, bytes);
  await t.throwsAsync(access(join(imageDir, `${id}.chunks`)));
  const answers = await Promise.all([1, 2, 3, 4].map(() => inject('GET', `/api/chunks/sys/${id}/index`, bearer)));
  t.deepEqual(
    answers.map((a) => a.statusCode),
    [200, 200, 200, 200],
  );
  t.true(answers.every((a) => a.rawPayload.equals(answers[0].rawPayload)));
  const { index, digest } = await indexOf(id);
  t.is(index.imageSize, bytes.length);
  t.is(index.chunkSize, DEFAULT_CHUNK_SIZE);
  t.deepEqual(index.chunks, [
    sha256Hex(bytes.subarray(0, DEFAULT_CHUNK_SIZE)),
    sha256Hex(bytes.subarray(DEFAULT_CHUNK_SIZE)),
  ]);
  t.true((await readFile(join(imageDir, `${id}.chunks`))).equals(answers[0].rawPayload));
  t.is((await api.store.findReadyById('sys', id))?.chunkIndex, digest);
});

test('index and chunks are immutable with a strong ETag; If-None-Match gets 304', async (t) => {
  const { index, digest } = await indexOf(ID);
  const res = await inject('GET', `/api/chunks/sys/${ID}/index`, bearer);
  t.is(res.headers.etag, `"${digest}"`);
  t.is(res.headers['cache-control'], 'public, max-age=31536000, immutable');
  const again = await inject('GET', `/api/chunks/sys/${ID}/index`, { ...bearer, 'if-none-match': `"${digest}"` });
  t.is(again.statusCode, 304);
  t.is(again.rawPayload.length, 0);
  const sha = index.chunks[1];
  const chunk = await inject('GET', `/api/chunks/sys/${ID}/chunk/${sha}`, bearer);
  t.is(chunk.statusCode, 200);
  t.is(chunk.headers.etag, `"${sha}"`);
  t.is(chunk.headers['cache-control'], 'public, max-age=31536000, immutable');
  t.is(chunk.headers['content-type'], 'application/octet-stream');
  const cached = await inject('GET', `/api/chunks/sys/${ID}/chunk/${sha}`, { ...bearer, 'if-none-match': `"${sha}"` });
  t.is(cached.statusCode, 304);
});

test('each chunk is the file bytes at its place; HEAD gives the length; a Range inside a chunk gets 206', async (t) => {
  const { index } = await indexOf(ID);
  t.is(index.chunks.length, 3);
  for (const [n, sha] of index.chunks.entries()) {
    const res = await inject('GET', `/api/chunks/sys/${ID}/chunk/${sha}`, bearer);
    const expected = IMAGE.subarray(n * DEFAULT_CHUNK_SIZE, (n + 1) * DEFAULT_CHUNK_SIZE);
    t.true(res.rawPayload.equals(expected), `chunk ${n}`);
    t.is(createHash('sha256').update(res.rawPayload).digest('hex'), sha);
  }
  const last = index.chunks[2];
  const head = await inject('HEAD', `/api/chunks/sys/${ID}/chunk/${last}`, bearer);
  t.is(head.statusCode, 200);
  t.is(head.headers['content-length'], String(DEFAULT_CHUNK_SIZE / 2));
  t.is(head.rawPayload.length, 0);
  const part = await inject('GET', `/api/chunks/sys/${ID}/chunk/${last}`, { ...bearer, range: 'bytes=10-19' });
  t.is(part.statusCode, 206);
  t.is(part.headers['content-range'], `bytes 10-19/${DEFAULT_CHUNK_SIZE / 2}`);
  t.true(part.rawPayload.equals(IMAGE.subarray(2 * DEFAULT_CHUNK_SIZE + 10, 2 * DEFAULT_CHUNK_SIZE + 20)));
  const outside = await inject('GET', `/api/chunks/sys/${ID}/chunk/${last}`, { ...bearer, range: 'bytes=9999999-' });
  t.is(outside.statusCode, 416);
});

test.serial('/metrics counts the answers that reached the gateway and the image bytes sent, not 304s', async (t) => {
  const scrape = async () => (await api.call('GET', '/metrics', {}, undefined, '127.0.0.1')).text;
  const value = (text: string, name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  const before = await scrape();
  const { index } = await indexOf(ID);
  const [first, last] = [index.chunks[0], index.chunks[2]];
  await inject('GET', `/api/chunks/sys/${ID}/chunk/${first}`, bearer);
  await inject('GET', `/api/chunks/sys/${ID}/chunk/${last}`, { ...bearer, range: 'bytes=0-99' });
  await inject('GET', `/api/chunks/sys/${ID}/chunk/${first}`, { ...bearer, 'if-none-match': `"${first}"` });
  await inject('HEAD', `/api/chunks/sys/${ID}/chunk/${first}`, bearer);
  const after = await scrape();
  const delta = (name: string) => value(after, name) - value(before, name);
  t.is(delta('shifter_gateway_chunk_answers_total\\{route="chunk"\\}'), 2);
  t.is(delta('shifter_gateway_chunk_answers_total\\{route="index"\\}'), 1);
  t.is(delta('shifter_gateway_chunk_answers_total\\{route="facts"\\}'), 1);
  t.is(delta('shifter_gateway_chunk_bytes_sent_total'), DEFAULT_CHUNK_SIZE + 100);
});

test('a chunk digest that is not in the image index is 404, as is an image that is not on the system', async (t) => {
  const stranger = sha256Hex(Buffer.from('not in this image'));
  const res = await api.call('GET', `/api/chunks/sys/${ID}/chunk/${stranger}`, bearer);
  t.is(res.status, 404);
  t.regex(String(res.json.error), new RegExp(`image ${ID} has no chunk ${stranger}`));
  t.is((await api.call('GET', `/api/chunks/sys/${ID}/chunk/nothex`, bearer)).status, 404);
  const missing = await api.call('GET', `/api/chunks/sys/${'0'.repeat(64)}/index`, bearer);
  t.is(missing.status, 404);
  t.regex(String(missing.json.error), /is not on sys; pull it first/);
  t.is((await api.call('GET', `/api/chunks/nosuch/${ID}/index`, bearer)).status, 404);
});

test('an image whose .meta is missing (a crash before it was written) is not served', async (t) => {
  const id = randomBytes(32).toString('hex');
  await readyImage(id, randomBytes(4096));
  await rm(join(imageDir, `${id}.meta`));
  const res = await api.call('GET', `/api/chunks/sys/${id}/index`, bearer);
  t.is(res.status, 404);
});

test('the image facts carry the index digest, the sizes and the .meta text, never cached', async (t) => {
  const info = await api.call('GET', `/api/chunks/sys/${ID}`, bearer);
  t.is(info.status, 200);
  const { digest } = await indexOf(ID);
  t.like(info.json, { id: ID, indexDigest: digest, imageSize: IMAGE.length, chunkCount: 3, meta: READY_META });
  const res = await inject('GET', `/api/chunks/sys/${ID}`, bearer);
  t.is(res.headers['cache-control'], 'no-store');
});

test('profile: first PUT wins, GET returns it, bad ones are refused, an admin resets it', async (t) => {
  const url = `/api/chunks/sys/${ID}/profile`;
  const body = (chunks: unknown[]) => JSON.stringify({ version: 1, imageId: ID, chunks });
  const json = { 'content-type': 'application/json' };
  t.is((await api.call('GET', url, bearer)).status, 404);
  const outOfRange = await api.call('PUT', url, { ...bearer, ...json }, body([0, 3]));
  t.is(outOfRange.status, 400);
  t.regex(String(outOfRange.json.error), /3 is not a chunk number of this image \(0 to 2\)/);
  t.is((await api.call('PUT', url, { ...bearer, ...json }, body([1, 1]))).status, 400);
  t.is((await api.call('PUT', url, { ...bearer, ...json }, 'nonsense')).status, 400);
  t.is((await api.call('PUT', url, { ...ALICE, ...json }, body([2]))).status, 403);
  const first = await api.call('PUT', url, { ...bearer, ...json }, body([2, 0]));
  t.is(first.status, 201);
  const second = await api.call('PUT', url, { ...bearer, ...json }, body([1]));
  t.is(second.status, 409);
  t.regex(String(second.json.error), /already has a prefetch profile.*an admin resets it with DELETE/);
  const got = await inject('GET', url, bearer);
  t.is(got.statusCode, 200);
  t.deepEqual(JSON.parse(got.body), { version: 1, imageId: ID, chunks: [2, 0] });
  t.is(got.headers['cache-control'], 'public, no-cache');
  const etag = String(got.headers.etag);
  t.is((await inject('GET', url, { ...bearer, 'if-none-match': etag })).statusCode, 304);
  t.is((await api.call('DELETE', url, ALICE)).status, 403);
  t.is((await api.call('DELETE', url, bearer)).status, 401);
  t.is((await api.call('DELETE', url, ROOT)).status, 204);
  t.is((await api.call('PUT', url, { ...bearer, ...json }, body([1]))).status, 201);
  t.deepEqual(JSON.parse((await inject('GET', url, bearer)).body), { version: 1, imageId: ID, chunks: [1] });
});
