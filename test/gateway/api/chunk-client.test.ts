/**
 * The node's client (common/gateway-client/chunks.ts) against the gateway's chunk routes over a
 * real socket: one munge exchange for many requests, a fresh one when the token dies, every byte
 * checked before it is returned, first-wins profiles, and bounded failures.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageId } from '../../../common/image-descriptor.js';
import { ChunkClient } from '../../../common/gateway-client/chunks.js';
import { DEFAULT_CHUNK_SIZE } from '../../../gateway/chunks/index-file.js';
import { createNodeTokens } from '../../../gateway/chunks/node-token.js';
import { ALICE, ROOT, startApi, type ApiUnderTest } from './api-under-test.js';
import { placeReadyImage, READY_META } from './ready-image.js';

let api: ApiUnderTest;
let url: string;
// The real time, movable: the client renews tokens by its own clock, the gateway checks them by this one.
let clock = Math.floor(Date.now() / 1000);
const tokens = createNodeTokens(randomBytes(32), 600, () => clock);
const clients: ChunkClient[] = [];

test.before(async () => {
  api = await startApi({}, { tokens });
  url = await api.app.listen({ host: '127.0.0.1', port: 0 });
});

test.after.always(async () => {
  for (const c of clients) await c.close();
  await api?.close();
});

function client(credential: string, over: { gateway?: string; timeoutMs?: number } = {}) {
  const calls = { count: 0 };
  const c = new ChunkClient({
    gateway: over.gateway ?? url,
    system: 'sys',
    timeoutMs: over.timeoutMs ?? 20_000,
    nodeCredential: () => {
      calls.count++;
      return Promise.resolve(credential);
    },
  });
  clients.push(c);
  return { c, calls };
}

async function image(chunks: number): Promise<{ id: ImageId; bytes: Buffer }> {
  const id = randomBytes(32).toString('hex') as ImageId;
  const bytes = randomBytes(DEFAULT_CHUNK_SIZE * chunks - 1000);
  await placeReadyImage(api, id, bytes);
  return { id, bytes };
}

test.serial('facts, index and every chunk with one munge exchange; a dead token is replaced once', async (t) => {
  const { id, bytes } = await image(3);
  const { c, calls } = client(ROOT.authentication);
  const facts = await c.imageFacts(id);
  t.is(facts.meta, READY_META);
  const index = await c.index(id, facts.indexDigest);
  const parts = await Promise.all(index.chunks.map((_, n) => c.chunk(index, n)));
  t.true(Buffer.concat(parts).equals(bytes));
  t.is(calls.count, 1);
  clock += 700;
  try {
    t.true((await c.chunk(index, 0)).equals(parts[0]));
    t.is(calls.count, 2, 'the expired token was exchanged again, once');
  } finally {
    clock -= 700;
  }
});

test('an index that is not the one the record names is refused', async (t) => {
  const { id } = await image(1);
  const { c } = client(ROOT.authentication);
  await t.throwsAsync(c.index(id, 'ab'.repeat(32)), { message: /its sha256 is not the abab/ });
});

test('a chunk whose bytes no longer match the index is refused, never returned', async (t) => {
  const { id, bytes } = await image(2);
  const { c } = client(ROOT.authentication);
  const index = await c.index(id, (await c.imageFacts(id)).indexDigest);
  const changed = Buffer.from(bytes);
  changed[5] ^= 0xff;
  await writeFile(join(api.config.platforms.sys.imageDir, `${id}.squashfs`), changed);
  await t.throwsAsync(c.chunk(index, 0), { code: 'DIGEST_MISMATCH', message: /chunk 0 of image .* does not match/ });
  t.true((await c.chunk(index, 1)).equals(bytes.subarray(DEFAULT_CHUNK_SIZE)));
});

test('a user credential cannot get a node token', async (t) => {
  const { id } = await image(1);
  const { c } = client(ALICE.authentication);
  await t.throwsAsync(c.imageFacts(id), { code: 'PERMISSION_DENIED', message: /user alice may not download/ });
});

test('profiles: none, then the first one stored wins', async (t) => {
  const { id } = await image(4);
  const { c } = client(ROOT.authentication);
  const index = await c.index(id, (await c.imageFacts(id)).indexDigest);
  t.is(await c.profile(index), null);
  t.is(await c.putProfile(index, [3, 0, 1]), 'stored');
  t.is(await c.putProfile(index, [2]), 'exists');
  t.deepEqual((await c.profile(index))?.chunks, [3, 0, 1]);
});

test('a gateway that is down or silent ends in UNREACHABLE within the deadline', async (t) => {
  const { id } = await image(1);
  const closed = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
  const down = client(ROOT.authentication, { gateway: `http://127.0.0.1:${closed}` }).c;
  await t.throwsAsync(down.imageFacts(id), { code: 'UNREACHABLE', message: /cannot reach the image gateway/ });
  const silent: Server = createServer(() => undefined);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const port = (silent.address() as { port: number }).port;
    const slow = client(ROOT.authentication, { gateway: `http://127.0.0.1:${port}`, timeoutMs: 1000 }).c;
    const started = Date.now();
    await t.throwsAsync(slow.imageFacts(id), { code: 'UNREACHABLE', message: /no answer within 1 s/ });
    t.true(Date.now() - started < 10_000);
  } finally {
    silent.close();
  }
});
