/**
 * The chunk routes' admission control (gateway/chunks/admission.ts) on its own: the cap on answers
 * in flight, round-robin between clients, the bounds on the queue's length and wait, and a client
 * that goes away while it waits.
 */
import test from 'ava';
import { ChunkAdmission, type Admission } from '../../../gateway/chunks/admission.js';

const limits = { concurrency: 2, queueLength: 100, maxWaitMs: 60_000 };

/** Settles pending promise callbacks. */
const tick = () => new Promise((r) => setImmediate(r));

function admitted(a: Admission): () => void {
  if (a.kind !== 'admitted') throw new Error(`expected admitted, got ${JSON.stringify(a)}`);
  return a.release;
}

test('at most `concurrency` answers in flight; a release lets the next waiter in', async (t) => {
  const adm = new ChunkAdmission(limits);
  const first = admitted(await adm.admit('a'));
  admitted(await adm.admit('a'));
  let third: Admission | undefined;
  void adm.admit('a').then((a) => (third = a));
  await tick();
  t.is(third, undefined);
  t.is(adm.depth, 1);
  t.is(adm.inFlight, 2);
  first();
  first();
  await tick();
  t.is(third?.kind, 'admitted');
  t.is(adm.depth, 0);
  t.is(adm.inFlight, 2, 'a second release of the same answer frees nothing more');
});

test('round-robin: a client with 64 waiting does not hold back one with 1', async (t) => {
  const adm = new ChunkAdmission({ ...limits, concurrency: 1 });
  let release = admitted(await adm.admit('flood'));
  const order: string[] = [];
  const releases: (() => void)[] = [];
  const wait = (client: string) =>
    void adm.admit(client).then((a) => {
      order.push(client);
      releases.push(admitted(a));
    });
  for (let n = 0; n < 64; n++) wait('flood');
  wait('single');
  await tick();
  t.is(adm.depth, 65);
  for (let n = 0; n < 3; n++) {
    release();
    await tick();
    release = releases.shift()!;
  }
  t.deepEqual(order, ['single', 'flood', 'flood'], 'the client never served goes first');
  t.is(adm.depth, 62);
});

test('a full queue refuses with Retry-After; a newcomer with fewer places takes the largest client’s newest', async (t) => {
  const adm = new ChunkAdmission({ concurrency: 1, queueLength: 3, maxWaitMs: 60_000 });
  admitted(await adm.admit('flood'));
  const flood: Promise<Admission>[] = [1, 2, 3].map(() => adm.admit('flood'));
  const over = await adm.admit('flood');
  t.is(over.kind, 'refused');
  if (over.kind !== 'refused') return;
  t.is(over.reason, 'queue_full');
  t.true(over.retryAfterSeconds >= 1 && over.retryAfterSeconds <= 30);
  t.regex(over.why, /ChunkConcurrency 1, ChunkQueueLength 3\); retry in \d+ s$/);
  void adm.admit('other');
  const evicted = await flood[2];
  t.is(evicted.kind, 'refused');
  t.is(adm.depth, 3, 'the newcomer holds the evicted place');
  const second = await adm.admit('other');
  t.is(second.kind, 'refused', 'a client holding as many places as the largest one is refused, not let in');
});

test('a request that waits longer than maxWaitMs is refused, not held', async (t) => {
  const adm = new ChunkAdmission({ concurrency: 1, queueLength: 10, maxWaitMs: 50 });
  admitted(await adm.admit('a'));
  const started = Date.now();
  const late = await adm.admit('b');
  t.is(late.kind, 'refused');
  t.is(late.kind === 'refused' ? late.reason : '', 'wait_timeout');
  t.true(Date.now() - started >= 45);
  t.is(adm.depth, 0);
});

test('a client gone while it waits leaves the queue and never takes a slot', async (t) => {
  const adm = new ChunkAdmission({ ...limits, concurrency: 1 });
  const release = admitted(await adm.admit('a'));
  const gone = new AbortController();
  const waiting = adm.admit('b', gone.signal);
  await tick();
  t.is(adm.depth, 1);
  gone.abort();
  t.is((await waiting).kind, 'cancelled');
  t.is(adm.depth, 0);
  release();
  t.is(adm.inFlight, 0);
});
