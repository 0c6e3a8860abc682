/**
 * Admission control on the chunk routes (gateway/chunks/admission.ts in chunk-routes.ts), as a node
 * sees it. Answers are held in their slot by a gate on the store lookup the route makes once
 * admitted (loopback's socket buffers would swallow a whole chunk, so a slow reader cannot hold
 * one): a flood from one node queues behind its own requests while another node is served in turn;
 * past the queue's bounds 503 with Retry-After and a JSON error, counted on /metrics; the gateway
 * serves on afterwards.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { parseChunkIndex } from '../../../common/chunk-index.js';
import { DEFAULT_CHUNK_SIZE } from '../../../gateway/chunks/index-file.js';
import type { ImageStore } from '../../../gateway/store/image-store.js';
import { ROOT, startApi, type ApiUnderTest } from './api-under-test.js';
import { placeReadyImage } from './ready-image.js';

/** Answers for this image wait at the gate; the other image's are answered at once. */
const GATED = randomBytes(32).toString('hex');
const FREE = randomBytes(32).toString('hex');
const IMAGE = randomBytes(DEFAULT_CHUNK_SIZE * 2);

interface Setup {
  api: ApiUnderTest;
  chunk: string;
  /** Lets `n` held answers of GATED go on. */
  open(n: number): void;
  /** Answers of GATED waiting at the gate, that is holding a slot. */
  held(): number;
  /** A fresh node token: each is a node of its own. */
  node(): Promise<string>;
  get(id: string, token: string): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }>;
  metric(name: string): Promise<number>;
}

async function setup(t: ExecutionContext, config: Record<string, unknown>): Promise<Setup> {
  const waiting: (() => void)[] = [];
  let passes = 0;
  const gate = (store: ImageStore): ImageStore =>
    new Proxy(store, {
      get(target, key, receiver) {
        const value = Reflect.get(target, key, receiver) as unknown;
        if (key !== 'findReadyById' || typeof value !== 'function') return value;
        return async (system: string, id: string) => {
          if (id === GATED && passes > 0) passes--;
          else if (id === GATED) await new Promise<void>((resolve) => waiting.push(resolve));
          return (value as ImageStore['findReadyById']).call(target, system, id);
        };
      },
    });
  const api = await startApi(config, { chunkStore: gate });
  t.teardown(async () => {
    for (const go of waiting.splice(0)) go();
    await api.close();
  });
  await placeReadyImage(api, GATED, IMAGE);
  await placeReadyImage(api, FREE, IMAGE);
  const node = async () => String((await api.call('POST', '/api/chunks/sys/session', ROOT)).json.token);
  const auth = { authorization: `Bearer ${await node()}` };
  const facts = await api.call('GET', `/api/chunks/sys/${FREE}`, auth);
  const index = await api.app.inject({ url: `/api/chunks/sys/${FREE}/index`, headers: auth });
  const chunk = parseChunkIndex(index.rawPayload, String(facts.json.indexDigest)).chunks[0];
  return {
    api,
    chunk,
    open(n) {
      for (let i = 0; i < n; i++) {
        const go = waiting.shift();
        if (go) go();
        else passes++;
      }
    },
    held: () => waiting.length,
    node,
    async get(id, token) {
      const res = await api.app.inject({
        url: `/api/chunks/sys/${id}/chunk/${chunk}`,
        headers: { authorization: `Bearer ${token}` },
      });
      return { status: res.statusCode, headers: res.headers, body: res.rawPayload };
    },
    async metric(name) {
      const text = (await api.call('GET', '/metrics')).text;
      const line = text.split('\n').find((l) => l.startsWith(`${name} `));
      if (line === undefined) throw new Error(`/metrics has no ${name}:\n${text}`);
      return Number(line.split(' ')[1]);
    },
  };
}

async function until(what: () => Promise<boolean> | boolean, ms: number, message: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await what())) {
    if (Date.now() > deadline) throw new Error(message);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('a flood from one node queues behind its own requests; another node is served before it drains', async (t) => {
  const s = await setup(t, { ChunkConcurrency: 2, ChunkQueueLength: 100, ChunkQueueWait: 120 });
  const flooder = await s.node();
  const done: string[] = [];
  const flood = Array.from({ length: 12 }, () =>
    s.get(GATED, flooder).then((r) => {
      done.push('flood');
      return r;
    }),
  );
  await until(
    async () => s.held() === 2 && (await s.metric('shifter_gateway_chunk_queue_depth')) === 10,
    30_000,
    'the flood did not fill the 2 slots and queue 10',
  );
  t.is(await s.metric('shifter_gateway_chunk_answers_in_flight'), 2);
  const other = s.get(FREE, await s.node()).then((r) => {
    done.push('other');
    return r;
  });
  await until(
    async () => (await s.metric('shifter_gateway_chunk_queue_depth')) === 11,
    30_000,
    "the other node's request did not queue",
  );
  // One of the flood's answers goes on: its slot goes to the other node, not to the flood's next.
  s.open(1);
  const served = await other;
  t.is(served.status, 200, served.body.toString().slice(0, 300));
  t.true(served.body.equals(IMAGE.subarray(0, DEFAULT_CHUNK_SIZE)));
  t.deepEqual(done, ['flood', 'other']);
  t.is(await s.metric('shifter_gateway_chunk_queue_depth'), 9, 'the flood still waits');

  s.open(11);
  const all = await Promise.all(flood);
  t.deepEqual(
    all.map((r) => r.status),
    Array(12).fill(200),
  );
  t.is(await s.metric('shifter_gateway_chunk_queue_depth'), 0);
  t.is(await s.metric('shifter_gateway_chunk_answers_in_flight'), 0);
});

test('over the queue bounds: 503 with Retry-After and a JSON error, counted; the gateway serves on', async (t) => {
  const s = await setup(t, { ChunkConcurrency: 1, ChunkQueueLength: 1, ChunkQueueWait: 2 });
  const node = await s.node();
  const holding = s.get(GATED, node);
  await until(() => s.held() === 1, 30_000, 'the first request did not take the slot');
  const queued = s.get(FREE, node);
  await until(
    async () => (await s.metric('shifter_gateway_chunk_queue_depth')) === 1,
    30_000,
    'the second request did not queue',
  );
  const over = await s.get(FREE, node);
  t.is(over.status, 503);
  const retryAfter = Number(over.headers['retry-after']);
  t.true(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 30, String(over.headers['retry-after']));
  t.is(over.headers['content-type'], 'application/json');
  const error = JSON.parse(over.body.toString()) as { status: number; error: string };
  t.is(error.status, 503);
  t.regex(error.error, /ChunkConcurrency 1, ChunkQueueLength 1\); retry in \d+ s$/);

  const started = Date.now();
  const timedOut = await queued;
  t.is(timedOut.status, 503, 'the queued request is refused after ChunkQueueWait, not held');
  t.true(Date.now() - started < 15_000);
  t.regex((JSON.parse(timedOut.body.toString()) as { error: string }).error, /waited 2 s .*ChunkQueueWait/);
  t.truthy(timedOut.headers['retry-after']);
  t.is(await s.metric('shifter_gateway_chunk_rejected_total{reason="queue_full"}'), 1);
  t.is(await s.metric('shifter_gateway_chunk_rejected_total{reason="wait_timeout"}'), 1);

  s.open(1);
  t.is((await holding).status, 200);
  s.open(2);
  t.is((await s.get(GATED, node)).status, 200);
  t.is((await s.get(FREE, node)).status, 200);
  t.is((await s.get(GATED, await s.node())).status, 200);
});
