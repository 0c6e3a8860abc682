/**
 * One contract, run against every store: SQLite always, MongoDB when SHIFTER_TEST_MONGODB_URI
 * names a server. Without it the MongoDB tests are registered as skipped (there is no MongoDB
 * server package on Debian to start one here): ava lists each of them and the runner's closing
 * line counts them, so a run without MongoDB never reads as if the MongoDB store were tested.
 */
import test, { type TestFn } from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import type { ImageStore } from '../../../gateway/store/image-store.js';
import { SqliteImageStore } from '../../../gateway/store/sqlite-store.js';
import { MongoImageStore } from '../../../gateway/store/mongo-store.js';
import type { CompletedPull, NewPull } from '../../../gateway/store/record.js';

const dirs: string[] = [];
const stores: ImageStore[] = [];
test.after.always(async () => {
  for (const s of stores) await s.close().catch(() => undefined);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

type Factory = () => Promise<ImageStore>;
const factories: [string, Factory, TestFn][] = [
  [
    'sqlite',
    async () => {
      const dir = await mkdtemp(join(tmpdir(), 'store-'));
      dirs.push(dir);
      const s = new SqliteImageStore(join(dir, 'sub', 'gateway.sqlite'));
      stores.push(s);
      return s;
    },
    test,
  ],
];
const mongoUri = process.env.SHIFTER_TEST_MONGODB_URI;
if (mongoUri) {
  factories.push([
    'mongodb',
    async () => {
      const s = await MongoImageStore.connect(mongoUri, `shifter_test_${randomBytes(6).toString('hex')}`);
      stores.push(s);
      return s;
    },
    test,
  ]);
} else {
  console.log('MongoDB store tests SKIPPED: set SHIFTER_TEST_MONGODB_URI (e.g. mongodb://127.0.0.1:27017) to run them');
  const unavailable: Factory = () => Promise.reject(new Error('SHIFTER_TEST_MONGODB_URI is not set'));
  factories.push(['mongodb (SKIPPED: set SHIFTER_TEST_MONGODB_URI)', unavailable, test.skip as unknown as TestFn]);
}

const pull = (over: Partial<NewPull> = {}): NewPull => ({
  system: 'sys',
  itype: 'docker',
  pulltag: 'ubuntu:latest',
  requesterUid: null,
  userACL: [],
  groupACL: [],
  format: 'squashfs',
  credentialed: false,
  now: 1000,
  ...over,
});
const done = (id: string, over: Partial<CompletedPull> = {}): CompletedPull => ({
  id,
  format: 'squashfs',
  ENV: ['PATH=/bin'],
  ENTRY: ['/bin/sh'],
  CMD: null,
  WORKDIR: '/',
  LABELS: { a: 'b' },
  USER: null,
  userACL: [],
  groupACL: [],
  private: false,
  now: 2000,
  expiration: null,
  status_message: 'Image ready',
  ...over,
});
const ID1 = 'a'.repeat(64);
const ID2 = 'b'.repeat(64);

for (const [name, make, contractTest] of factories) {
  contractTest(`${name}: autoexpire's walk finds READY images past their expiration, in batches`, async (t) => {
    const s = await make();
    const ids = ['1', '2', '3', '4', '5'].map((c) => c.repeat(64));
    for (const [i, id] of ids.entries()) {
      const p = await s.createPull(pull({ pulltag: `img:${i}` }));
      await s.completePull(p.key, done(id, { expiration: i < 4 ? 5000 + i : 9000 }));
    }
    const other = await s.createPull(pull({ system: 'other', pulltag: 'img:0' }));
    await s.completePull(other.key, done('6'.repeat(64), { expiration: 10 }));
    const first = await s.listExpiredBefore('sys', 8000, null, 3);
    t.is(first.length, 3);
    const rest = await s.listExpiredBefore('sys', 8000, first[2].key, 3);
    t.deepEqual([...first, ...rest].map((r) => r.id).sort(), ids.slice(0, 4));
    await s.update(first[0].key, { status: 'EXPIRED' });
    t.is((await s.listExpiredBefore('sys', 8000, null, 10)).length, 3, 'an EXPIRED record is not listed again');
    await s.update(first[1].key, { expiration: 8500 });
    t.is((await s.listExpiredBefore('sys', 8000, null, 10)).length, 2, 'a lookup pushes the expiration back');
  });

  contractTest(`${name}: removing one tag of an image keeps the record, its other tags and their grants`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull({ pulltag: 'team/x:1', requesterUid: 1000, userACL: [1000] }));
    await s.completePull(a.key, done(ID1, { userACL: [1000], private: true }));
    const b = await s.createPull(pull({ pulltag: 'team/x:2' }));
    await s.completePull(b.key, done(ID1));
    const rec = await s.removeTag(a.key, 'team/x:1');
    t.deepEqual(rec.tag, ['team/x:2']);
    t.deepEqual(
      rec.grants.map((g) => g.tag),
      ['team/x:2'],
    );
    t.is(await s.findReadyByTag('sys', 'docker', 'team/x:1'), null);
    t.is((await s.findReadyByTag('sys', 'docker', 'team/x:2'))?.id, ID1);
  });

  contractTest(`${name}: a new pull is PENDING and replaces an older non-READY pull of the same tag`, async (t) => {
    const s = await make();
    const first = await s.createPull(pull());
    await s.update(first.key, { status: 'FAILURE', status_message: 'boom' });
    const second = await s.createPull(pull({ now: 1100 }));
    t.is(second.status, 'PENDING');
    t.is(await s.get(first.key), null);
    t.is((await s.findPullByTag('sys', 'docker', 'ubuntu:latest'))?.key, second.key);
    t.deepEqual(
      (await s.listQueue('sys')).map((r) => [r.status, r.pulltag]),
      [['PENDING', 'ubuntu:latest']],
    );
  });

  contractTest(`${name}: completing a pull makes it READY, findable by tag and id, and out of the queue`, async (t) => {
    const s = await make();
    const p = await s.createPull(pull());
    const rec = await s.completePull(p.key, done(ID1));
    t.is(rec.status, 'READY');
    t.deepEqual(rec.tag, ['ubuntu:latest']);
    t.deepEqual(rec.ENV, ['PATH=/bin']);
    t.is((await s.findReadyByTag('sys', 'docker', 'ubuntu:latest'))?.id, ID1);
    t.is((await s.findReadyById('sys', ID1))?.key, p.key);
    t.is(await s.findReadyByTag('other', 'docker', 'ubuntu:latest'), null);
    t.deepEqual(await s.listQueue('sys'), []);
    t.deepEqual(
      (await s.listReady('sys')).map((r) => r.id),
      [ID1],
    );
  });

  contractTest(`${name}: a second tag of the same image id joins the existing record (dedupe by id)`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull());
    await s.completePull(a.key, done(ID1));
    const b = await s.createPull(pull({ pulltag: 'ubuntu:24.04' }));
    const rec = await s.completePull(b.key, done(ID1, { now: 3000 }));
    t.is(rec.key, a.key);
    t.deepEqual([...rec.tag].sort(), ['ubuntu:24.04', 'ubuntu:latest']);
    t.is(rec.last_pull, 3000);
    t.is(await s.get(b.key), null);
    t.is((await s.listReady('sys')).length, 1);
  });

  contractTest(`${name}: a tag moves to the newest image`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull());
    await s.completePull(a.key, done(ID1));
    const b = await s.createPull(pull({ now: 1500 }));
    await s.completePull(b.key, done(ID2));
    t.is((await s.findReadyByTag('sys', 'docker', 'ubuntu:latest'))?.id, ID2);
    t.deepEqual((await s.get(a.key))?.tag, []);
    t.is((await s.listReady('sys')).length, 2);
  });

  contractTest(`${name}: public images drop their ACLs, private ones keep them`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull({ userACL: [5, 1000] }));
    const pub = await s.completePull(a.key, done(ID1, { userACL: [5, 1000], private: false }));
    t.deepEqual(pub.userACL, []);
    const b = await s.createPull(pull({ pulltag: 'secret:1', userACL: [5, 1000] }));
    const priv = await s.completePull(b.key, done(ID2, { userACL: [5, 1000], groupACL: [7], private: true }));
    t.deepEqual(priv.userACL, [5, 1000]);
    t.deepEqual(priv.groupACL, [7]);
    t.true(priv.private);
  });

  contractTest(
    `${name}: tags of one image keep their own access; the image has the union (public if one is)`,
    async (t) => {
      const s = await make();
      const a = await s.createPull(pull({ pulltag: 'app:public', requesterUid: 1000 }));
      await s.completePull(a.key, done(ID1));
      const b = await s.createPull(pull({ pulltag: 'app:private', requesterUid: 1000, userACL: [1000] }));
      await s.completePull(b.key, done(ID1, { userACL: [1000], private: true }));
      const pub = await s.findReadyByTag('sys', 'docker', 'app:public');
      t.deepEqual([pub?.private, pub?.userACL], [false, []], 'a private pull of another tag does not narrow this one');
      const priv = await s.findReadyByTag('sys', 'docker', 'app:private');
      t.deepEqual([priv?.private, priv?.userACL], [true, [1000]]);
      const image = await s.findReadyById('sys', ID1);
      t.deepEqual([image?.private, image?.userACL, image?.groupACL], [false, [], []]);
      t.deepEqual([...image!.tag].sort(), ['app:private', 'app:public']);

      const c = await s.createPull(pull({ pulltag: 'app:public', requesterUid: 1000, now: 3000 }));
      await s.completePull(c.key, done(ID1, { now: 4000 }));
      const still = await s.findReadyByTag('sys', 'docker', 'app:private');
      t.deepEqual(still?.userACL, [1000], 'the next public pull leaves the private tag private');
    },
  );

  contractTest(`${name}: tags private to different users: each keeps its list, the image admits both`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull({ pulltag: 'app:alice', requesterUid: 1000, userACL: [1000] }));
    await s.completePull(a.key, done(ID1, { userACL: [1000], groupACL: [50], private: true }));
    const b = await s.createPull(pull({ pulltag: 'app:bob', requesterUid: 2000, userACL: [2000] }));
    await s.completePull(b.key, done(ID1, { userACL: [2000], private: true }));
    t.deepEqual((await s.findReadyByTag('sys', 'docker', 'app:alice'))?.userACL, [1000]);
    t.deepEqual((await s.findReadyByTag('sys', 'docker', 'app:bob'))?.userACL, [2000]);
    const image = await s.findReadyById('sys', ID1);
    t.deepEqual([image?.private, image?.userACL, image?.groupACL], [true, [1000, 2000], [50]]);
  });

  contractTest(
    `${name}: another user's private pull of a tag never narrows it; a re-pull replaces one's grant`,
    async (t) => {
      const s = await make();
      const tagAcl = async () => {
        const r = await s.findReadyByTag('sys', 'docker', 'app:1');
        return [r?.private, r?.userACL];
      };
      const alice = await s.createPull(pull({ pulltag: 'app:1', requesterUid: 1000 }));
      await s.completePull(alice.key, done(ID1));
      const bob = await s.createPull(pull({ pulltag: 'app:1', requesterUid: 2000, userACL: [2000], now: 3000 }));
      await s.completePull(bob.key, done(ID1, { userACL: [2000], private: true, now: 3000 }));
      t.deepEqual(await tagAcl(), [false, []]);
      t.is((await s.findReadyById('sys', ID1))?.private, false);
      const again = await s.createPull(pull({ pulltag: 'app:1', requesterUid: 1000, userACL: [1000], now: 5000 }));
      await s.completePull(again.key, done(ID1, { userACL: [1000], private: true, now: 5000 }));
      t.deepEqual(await tagAcl(), [true, [1000, 2000]]);
      t.deepEqual((await s.findReadyById('sys', ID1))?.userACL, [1000, 2000]);
    },
  );

  contractTest(
    `${name}: a tag moving to other content leaves the old image's access as its .meta has it`,
    async (t) => {
      const s = await make();
      const a = await s.createPull(pull({ pulltag: 'app:1' }));
      await s.completePull(a.key, done(ID1));
      const b = await s.createPull(pull({ pulltag: 'app:2', requesterUid: 5, userACL: [5] }));
      await s.completePull(b.key, done(ID1, { userACL: [5], private: true }));
      const moved = await s.createPull(pull({ pulltag: 'app:1', now: 3000 }));
      await s.completePull(moved.key, done(ID2, { userACL: [7], private: true, now: 3000 }));
      const old = await s.findReadyById('sys', ID1);
      t.deepEqual(old?.tag, ['app:2']);
      t.is(old?.private, false);
      t.deepEqual((await s.findReadyByTag('sys', 'docker', 'app:2'))?.userACL, [5]);
      t.deepEqual((await s.findReadyByTag('sys', 'docker', 'app:1'))?.userACL, [7]);
    },
  );

  contractTest(
    `${name}: old FAILURE records are deleted, recent ones kept; listByStatus finds in-flight pulls`,
    async (t) => {
      const s = await make();
      const old = await s.createPull(pull({ pulltag: 'old:1', now: 100 }));
      await s.update(old.key, { status: 'FAILURE' });
      const fresh = await s.createPull(pull({ pulltag: 'new:1', now: 900 }));
      await s.update(fresh.key, { status: 'FAILURE' });
      const running = await s.createPull(pull({ pulltag: 'run:1', now: 950 }));
      await s.update(running.key, {
        status: 'PULLING',
        progress: { layersDone: 1, layersTotal: 3, bytesDone: 10, bytesTotal: 30 },
      });
      t.is(await s.deleteFailuresBefore(500), 1);
      t.is(await s.get(old.key), null);
      t.truthy(await s.get(fresh.key));
      const inflight = await s.listByStatus(['PENDING', 'PULLING']);
      t.deepEqual(
        inflight.map((r) => r.pulltag),
        ['run:1'],
      );
      t.deepEqual(inflight[0].progress, { layersDone: 1, layersTotal: 3, bytesDone: 10, bytesTotal: 30 });
    },
  );

  contractTest(`${name}: updating a deleted record is a NOT_FOUND error`, async (t) => {
    const s = await make();
    const a = await s.createPull(pull());
    await s.delete(a.key);
    await t.throwsAsync(s.update(a.key, { status: 'PULLING' }), { message: /no longer exists/ });
  });

  contractTest(`${name}: metrics keep the last N per system in insertion order`, async (t) => {
    const s = await make();
    for (let i = 0; i < 5; i++)
      await s.addMetric({ user: 'u', uid: 1, system: 'sys', type: 'docker', tag: `t${i}`, id: ID1, time: i });
    await s.addMetric({ user: 'u', uid: 1, system: 'other', type: 'docker', tag: 'x', id: ID1, time: 9 });
    t.deepEqual(
      (await s.listMetrics('sys', 3)).map((m) => m.tag),
      ['t2', 't3', 't4'],
    );
  });
}

test("sqlite: a record stored before tags had their own access: each tag has the record's", async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'store-'));
  dirs.push(dir);
  const file = join(dir, 'g.sqlite');
  const a = new SqliteImageStore(file);
  const p = await a.createPull(pull({ pulltag: 'old:1', userACL: [9] }));
  await a.completePull(p.key, done(ID1, { userACL: [9], private: true }));
  await a.close();
  const db = new Database(file);
  const row = db.prepare('SELECT doc FROM images WHERE key = ?').get(p.key) as { doc: string };
  const { grants: _grants, requesterUid: _uid, ...legacy } = JSON.parse(row.doc) as Record<string, unknown>;
  db.prepare('UPDATE images SET doc = ? WHERE key = ?').run(JSON.stringify(legacy), p.key);
  db.close();
  const b = new SqliteImageStore(file);
  stores.push(b);
  const rec = await b.findReadyByTag('sys', 'docker', 'old:1');
  t.deepEqual([rec?.private, rec?.userACL], [true, [9]]);
  const q = await b.createPull(pull({ pulltag: 'new:1', requesterUid: 4 }));
  await b.completePull(q.key, done(ID1));
  t.deepEqual((await b.findReadyByTag('sys', 'docker', 'old:1'))?.userACL, [9], 'the old tag keeps its list');
  t.is((await b.findReadyById('sys', ID1))?.private, false);
});

test('sqlite: a store written before expiry existed gets the expiration column, filled from the records', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'store-'));
  dirs.push(dir);
  const file = join(dir, 'g.sqlite');
  const a = new SqliteImageStore(file);
  const p = await a.createPull(pull({ pulltag: 'old:1' }));
  await a.completePull(p.key, done(ID1, { expiration: 500 }));
  await a.close();
  const db = new Database(file);
  db.exec('DROP INDEX images_expiry; ALTER TABLE images DROP COLUMN expiration;');
  db.close();
  const b = new SqliteImageStore(file);
  stores.push(b);
  t.deepEqual(
    (await b.listExpiredBefore('sys', 1000, null, 10)).map((r) => r.id),
    [ID1],
  );
  t.deepEqual(await b.listExpiredBefore('sys', 400, null, 10), []);
});

test('sqlite: records survive reopening the file (WAL, synchronous=FULL)', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'store-'));
  dirs.push(dir);
  const file = join(dir, 'g.sqlite');
  const a = new SqliteImageStore(file);
  const p = await a.createPull(pull());
  await a.completePull(p.key, done(ID1));
  await a.close();
  const b = new SqliteImageStore(file);
  stores.push(b);
  t.is((await b.findReadyByTag('sys', 'docker', 'ubuntu:latest'))?.id, ID1);
});
