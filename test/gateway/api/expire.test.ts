/**
 * expire and autoexpire through the real routes (fastify inject), on records and image files set
 * up in the store and imageDir directly: who may expire what (admins, the user who pulled a
 * private image, nobody else), what happens to files an image still shares, and autoexpire.
 */
import test from 'ava';
import { access, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CompletedPull } from '../../../gateway/store/record.js';
import { ALICE, BOB, ROOT, startApi, type ApiUnderTest } from './api-under-test.js';

let api: ApiUnderTest;
let seq = 0;

test.before(async () => {
  api = await startApi({ ImageExpirationTimeout: '0:00:01:00' });
});

test.after.always(async () => {
  await api?.close();
});

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

function newId(): string {
  seq += 1;
  return seq.toString(16).padStart(64, 'e');
}

/** A READY image pulled as `tag` by `uid` (null: anonymous), with both files in imageDir. */
async function ready(tag: string, opts: { uid?: number | null; acl?: number[]; id?: string; expiration?: number }) {
  const id = opts.id ?? newId();
  const dir = api.config.platforms.sys.imageDir;
  await writeFile(join(dir, `${id}.squashfs`), 'image');
  await writeFile(join(dir, `${id}.meta`), 'FORMAT: squashfs\n');
  const acl = opts.acl ?? [];
  const p = await api.store.createPull({
    system: 'sys',
    itype: 'docker',
    pulltag: tag,
    requesterUid: opts.uid ?? null,
    userACL: acl,
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: Date.now() / 1000,
  });
  const result: CompletedPull = {
    id,
    format: 'squashfs',
    ENV: [],
    ENTRY: null,
    CMD: null,
    WORKDIR: null,
    LABELS: {},
    USER: null,
    userACL: acl,
    groupACL: [],
    private: acl.length > 0,
    now: Date.now() / 1000,
    expiration: opts.expiration ?? Date.now() / 1000 + 60,
    status_message: 'Image ready',
  };
  await api.store.completePull(p.key, result);
  return { id, image: join(dir, `${id}.squashfs`), meta: join(dir, `${id}.meta`) };
}

test.serial('an admin expires an image: its files go, the record is EXPIRED, lookups say not found', async (t) => {
  const img = await ready('team/old:1', {});
  const dir = api.config.platforms.sys.imageDir;
  const described = [join(dir, `${img.id}.chunks`), join(dir, `${img.id}.profile`)];
  for (const f of described) await writeFile(f, '{}');
  const r = await api.call('POST', '/api/expire/sys/docker/team/old:1/', ROOT);
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, { status: true });
  t.false(await exists(img.meta));
  t.false(await exists(img.image));
  for (const f of described) t.false(await exists(f), `${f}: the chunk index and prefetch profile go with the image`);
  t.is((await api.call('GET', '/api/lookup/sys/docker/team/old:1/', ALICE)).status, 404);
  const rec = await api.store.findPullByTag('sys', 'docker', 'team/old:1');
  t.is(rec?.status, 'EXPIRED');
  const again = await api.call('GET', '/api/expire/sys/docker/team/old:1/', ROOT);
  t.is(again.status, 404);
  t.regex(String(again.json.error), /team\/old:1 is not on sys, so there is nothing to expire/);
});

test.serial('upstream C shifterimg sends GET: expire answers it as POST', async (t) => {
  const img = await ready('team/get:1', {});
  const r = await api.call('GET', '/api/expire/sys/docker/team/get:1/', ROOT);
  t.is(r.status, 200, r.text);
  t.is(r.type, 'application/json');
  t.false(await exists(img.image));
});

test.serial('the user who pulled a private image may expire it; other users get 403 or 404', async (t) => {
  const img = await ready('team/mine:1', { uid: 1000, acl: [1000, 1001] });
  const bob = await api.call('POST', '/api/expire/sys/docker/team/mine:1/', BOB);
  t.is(bob.status, 403, bob.text);
  t.regex(String(bob.json.error), /not a private image only you \(bob\) pulled: ask an admin of system sys/);
  const carol = await api.call('POST', '/api/expire/sys/docker/team/mine:1/', {
    authentication: 'good:carol:users::1002:102',
  });
  t.is(carol.status, 404, 'a user who cannot read the image is not told it exists');
  const anon = await api.call('POST', '/api/expire/sys/docker/team/mine:1/');
  t.is(anon.status, 404);
  t.true(await exists(img.image));
  const alice = await api.call('POST', '/api/expire/sys/docker/team/mine:1/', ALICE);
  t.is(alice.status, 200, alice.text);
  t.false(await exists(img.image));
});

test.serial('a user may not expire a public image, even one they pulled', async (t) => {
  const img = await ready('team/public:1', { uid: 1000 });
  const r = await api.call('POST', '/api/expire/sys/docker/team/public:1/', ALICE);
  t.is(r.status, 403);
  t.true(await exists(img.meta));
  const anon = await api.call('POST', '/api/expire/sys/docker/team/public:1/');
  t.is(anon.status, 401);
  t.regex(String(anon.json.error), /needs an authenticated request/);
});

test.serial('expiring one tag of an image that has others keeps the files and the other tags', async (t) => {
  const img = await ready('team/shared:a', {});
  await ready('team/shared:b', { id: img.id });
  const r = await api.call('POST', '/api/expire/sys/docker/team/shared:a/', ROOT);
  t.is(r.status, 200, r.text);
  t.true(await exists(img.meta));
  t.true(await exists(img.image));
  t.is((await api.call('GET', '/api/lookup/sys/docker/team/shared:a/', ALICE)).status, 404);
  const b = await api.call('GET', '/api/lookup/sys/docker/team/shared:b/', ALICE);
  t.is(b.status, 200);
  t.deepEqual(b.json.tag, ['team/shared:b']);
  t.is((await api.call('POST', '/api/expire/sys/docker/team/shared:b/', ROOT)).status, 200);
  t.false(await exists(img.image));
});

test.serial('expire by id is for admins and takes every tag', async (t) => {
  const img = await ready('team/byid:a', {});
  await ready('team/byid:b', { id: img.id });
  const alice = await api.call('POST', `/api/expire/sys/id/${img.id}/`, ALICE);
  t.is(alice.status, 403);
  t.regex(String(alice.json.error), /only an admin of system sys \(Platforms\.sys\.admins\) may expire an image by id/);
  t.is((await api.call('POST', `/api/expire/sys/id/${img.id}/`, ROOT)).status, 200);
  t.false(await exists(img.image));
  t.is((await api.call('GET', '/api/lookup/sys/docker/team/byid:b/', ALICE)).status, 404);
});

test.serial('autoexpire is for admins; it expires what was not looked up in time and keeps the rest', async (t) => {
  const now = Date.now() / 1000;
  const stale = await ready('team/stale:1', { expiration: now - 5 });
  const looked = await ready('team/looked:1', { expiration: now - 5 });
  const fresh = await ready('team/fresh:1', { expiration: now + 3600 });
  t.is((await api.call('GET', '/api/lookup/sys/docker/team/looked:1/', ALICE)).status, 200);
  const alice = await api.call('GET', '/api/autoexpire/sys/', ALICE);
  t.is(alice.status, 403);
  t.regex(
    String(alice.json.error),
    /autoexpire is for admins of system sys \(Platforms\.sys\.admins\); alice is not one/,
  );
  const r = await api.call('GET', '/api/autoexpire/sys/', ROOT);
  t.is(r.status, 200, r.text);
  t.deepEqual(r.json, { status: [stale.id] });
  t.false(await exists(stale.image));
  t.true(await exists(looked.image), 'a lookup pushed the expiration back by ImageExpirationTimeout');
  t.true(await exists(fresh.image));
});

test.serial('expire and autoexpire on an unknown system are 404 naming the systems', async (t) => {
  const r = await api.call('GET', '/api/autoexpire/nope/', ROOT);
  t.is(r.status, 404);
  t.regex(String(r.json.error), /system "nope" is not configured on this gateway \(known: sys\)/);
});
