import test from 'ava';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvironmentCache, ImageMountPool, environmentKey } from '../../node-daemon/environment-cache.js';

class FakeEnv {
  closed = 0;
  constructor(readonly name: string) {}
  close(): void {
    this.closed += 1;
  }
}

const parts = {
  uid: 1000,
  gid: 100,
  groups: [100, 5],
  imageId: 'a'.repeat(64),
  volumeSignature: '/x:/y',
  modules: ['m'],
  generation: 1,
};

test('keys differ for every part and ignore group order', (t) => {
  const k = environmentKey(parts);
  t.is(k, environmentKey({ ...parts, groups: [5, 100] }));
  for (const change of [
    { uid: 1 },
    { gid: 1 },
    { groups: [1] },
    { imageId: 'b' },
    { volumeSignature: '' },
    { modules: [] },
    { generation: 2 },
  ]) {
    t.not(environmentKey({ ...parts, ...change }), k, JSON.stringify(change));
  }
});

test('concurrent launches of one key share one creation', async (t) => {
  const cache = new EnvironmentCache<FakeEnv>({ max: 10, idleTtlMs: 60_000 });
  let created = 0;
  const create = async (): Promise<FakeEnv> => {
    created += 1;
    await sleep(20);
    return new FakeEnv('e');
  };
  const leases = await Promise.all([1, 2, 3, 4, 5].map(() => cache.acquire('k', 'img', create)));
  t.is(created, 1);
  t.true(leases.every((l) => l.env === leases[0].env));
  t.is(leases.filter((l) => !l.reused).length, 1);
  leases.forEach((l) => l.release());
  const again = await cache.acquire('k', 'img', create);
  t.true(again.reused);
  t.is(created, 1);
  again.release();
});

test('a failed creation is not cached', async (t) => {
  const cache = new EnvironmentCache<FakeEnv>({ max: 10, idleTtlMs: 60_000 });
  await t.throwsAsync(
    cache.acquire('k', 'img', async () => {
      throw new Error('helper failed');
    }),
    { message: 'helper failed' },
  );
  const l = await cache.acquire('k', 'img', async () => new FakeEnv('ok'));
  t.is(l.env.name, 'ok');
  l.release();
});

test('an environment in use is closed only when its lease ends; idle ones on invalidate', async (t) => {
  const closedImages: string[] = [];
  const cache = new EnvironmentCache<FakeEnv>({ max: 10, idleTtlMs: 60_000 }, (img) => closedImages.push(img));
  const busy = await cache.acquire('busy', 'img1', async () => new FakeEnv('busy'));
  const idle = await cache.acquire('idle', 'img2', async () => new FakeEnv('idle'));
  idle.release();
  cache.invalidate();
  t.is(idle.env.closed, 1);
  t.is(busy.env.closed, 0, 'still leased');
  t.deepEqual(closedImages, ['img2']);
  busy.release();
  t.is(busy.env.closed, 1);
  busy.release();
  t.is(busy.env.closed, 1, 'double release is harmless');
  t.is(cache.size, 0);
});

test('idle environments expire; the size cap evicts the least recently used', async (t) => {
  const cache = new EnvironmentCache<FakeEnv>({ max: 2, idleTtlMs: 150 });
  const envs: FakeEnv[] = [];
  for (const k of ['a', 'b', 'c']) {
    const l = await cache.acquire(k, 'img', async () => {
      const e = new FakeEnv(k);
      envs.push(e);
      return e;
    });
    l.release();
  }
  t.is(envs[0].closed, 1, 'a was evicted by the cap');
  t.is(cache.size, 2);
  await sleep(400);
  t.is(cache.size, 0);
  t.true(envs.every((e) => e.closed === 1));
});

test('remove and list', async (t) => {
  const cache = new EnvironmentCache<FakeEnv>({ max: 10, idleTtlMs: 60_000 });
  const l = await cache.acquire('k1', 'img', async () => new FakeEnv('x'));
  t.deepEqual(
    cache.list().map((e) => [e.key, e.imageId, e.leases]),
    [['k1', 'img', 1]],
  );
  t.true(cache.remove('k1'));
  t.false(cache.remove('k1'));
  t.is(l.env.closed, 0);
  l.release();
  t.is(l.env.closed, 1);
});

test('a hold outlives the idle limit and the size cap; the last holder to let go closes it', async (t) => {
  const cache = new EnvironmentCache<FakeEnv>({ max: 1, idleTtlMs: 50 });
  const env = new FakeEnv('held');
  const lease = await cache.acquire('k', 'img', async () => env);
  lease.hold('job-1');
  lease.hold('job-2');
  lease.release();
  await cache.acquire('other', 'img', async () => new FakeEnv('other')).then((l) => l.release());
  await sleep(150);
  t.is(env.closed, 0);
  t.deepEqual(
    cache.list().map((e) => [e.key, e.holders]),
    [['k', ['job-1', 'job-2']]],
  );
  const again = await cache.acquire('k', 'img', async () => new FakeEnv('rebuilt'));
  t.is(again.env, env);
  t.true(again.reused);
  again.release();
  t.deepEqual(
    cache.heldBy('job-1').map((h) => h.holders),
    [['job-1', 'job-2']],
  );
  t.deepEqual(cache.unhold('job-1'), { dropped: 0, kept: 1 });
  t.is(env.closed, 0);
  t.deepEqual(cache.unhold('job-2'), { dropped: 1, kept: 0 });
  t.is(env.closed, 1);
  t.is(cache.size, 0);
  t.deepEqual(cache.unhold('job-2'), { dropped: 0, kept: 0 });
});

test('image mount pool: one attach per image, released with its last user', async (t) => {
  const pool = new ImageMountPool<{ released: number; release(): void }>();
  let attaches = 0;
  const attach = async () => {
    attaches += 1;
    await sleep(10);
    return {
      released: 0,
      release() {
        this.released += 1;
      },
    };
  };
  const [m1, m2] = await Promise.all([pool.acquire('img', attach), pool.acquire('img', attach)]);
  t.is(attaches, 1);
  t.is(m1, m2);
  t.is(pool.usersOf('img'), 2);
  pool.release('img');
  t.is(m1.released, 0);
  pool.release('img');
  await sleep(1);
  t.is(m1.released, 1);
  t.is(pool.attached, 0);
  await t.throwsAsync(
    pool.acquire('bad', async () => {
      throw new Error('no loop device');
    }),
  );
  t.is(pool.attached, 0);
});
