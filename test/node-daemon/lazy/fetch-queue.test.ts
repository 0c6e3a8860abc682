import test from 'ava';
import { FetchQueue } from '../../../node-daemon/lazy/fetch-queue.js';

/** A fetch that runs until `finish` is called; `started` says whether the queue let it begin. */
function gate(): { work: () => Promise<string>; finish: () => void; started: () => boolean } {
  let began = false;
  let finish: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return {
    work: async () => {
      began = true;
      await done;
      return 'bytes';
    },
    finish,
    started: () => began,
  };
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('prefetch fills the free slots; a demand fetch starts at once even when they are taken', async (t) => {
  const queue = new FetchQueue(2);
  const prefetch = [gate(), gate(), gate()];
  const queued = prefetch.map((g) => queue.run('prefetch', g.work));
  await tick();
  t.deepEqual(
    prefetch.map((g) => g.started()),
    [true, true, false],
  );
  const demand = gate();
  const read = queue.run('demand', demand.work);
  await tick();
  t.true(demand.started(), 'the reader does not wait behind prefetch');
  prefetch[0].finish();
  await queued[0].result;
  await tick();
  t.false(prefetch[2].started(), 'prefetch waits while the demand fetch holds the link');
  demand.finish();
  t.is(await read.result, 'bytes');
  await tick();
  t.true(prefetch[2].started());
  prefetch[1].finish();
  prefetch[2].finish();
  t.deepEqual(await Promise.all(queued.map((q) => q.result)), ['bytes', 'bytes', 'bytes']);
  t.deepEqual(queue.load, { inFlight: 0, queued: 0 });
});

test('a reader needing a queued prefetch promotes it instead of waiting behind the others', async (t) => {
  const queue = new FetchQueue(1);
  const first = gate();
  const wanted = gate();
  queue.run('prefetch', first.work);
  const queued = queue.run('prefetch', wanted.work);
  await tick();
  t.false(wanted.started());
  queued.promote();
  await tick();
  t.true(wanted.started());
  wanted.finish();
  first.finish();
  t.is(await queued.result, 'bytes');
  await tick();
  t.deepEqual(queue.load, { inFlight: 0, queued: 0 });
});
