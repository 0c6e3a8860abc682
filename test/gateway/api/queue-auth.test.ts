/**
 * /api/queue needs an authenticated caller and shows each one only the pulls they may see (issue 7
 * item 9): upstream answered anyone and listed the tags of private pulls too.
 */
import test from 'ava';
import { ALICE, BOB, ROOT, startApi, type ApiUnderTest } from './api-under-test.js';

let api: ApiUnderTest;

const json = { 'content-type': 'application/json' };

test.before(async () => {
  api = await startApi();
  const pulls: [Record<string, string>, string, string][] = [
    [ALICE, 'team/public:1', ''],
    [ALICE, 'team/alice-secret:1', '{"allowed_uids": "1000"}'],
    [BOB, 'team/bob-secret:1', '{"allowed_uids": "1001"}'],
    [BOB, 'team/staff-only:1', '{"allowed_gids": "101"}'],
  ];
  for (const [who, tag, body] of pulls) {
    const r = await api.call('POST', `/api/pull/sys/docker/${tag}/`, { ...who, ...json }, body);
    if (r.status !== 200) throw new Error(`pull ${tag} answered ${r.status}: ${r.text}`);
  }
});

test.after.always(async () => {
  await api?.close();
});

async function queueOf(headers: Record<string, string>): Promise<string[]> {
  const r = await api.call('GET', '/api/queue/sys/', headers);
  if (r.status !== 200) throw new Error(`queue answered ${r.status}: ${r.text}`);
  return (r.json.list as { image: string }[]).map((q) => q.image).sort();
}

test('an anonymous caller gets 401 in the one error shape, and no tags', async (t) => {
  const r = await api.call('GET', '/api/queue/sys/');
  t.is(r.status, 401);
  t.is(r.type, 'application/json');
  t.deepEqual(Object.keys(r.json), ['status', 'error', 'message']);
  t.regex(String(r.json.error), /authenticated users only; send a munge credential/);
  t.notRegex(r.text, /secret/);
});

test("a user sees public pulls and their own private ones, never another user's", async (t) => {
  t.deepEqual(await queueOf(ALICE), ['team/alice-secret:1', 'team/public:1']);
  t.deepEqual(await queueOf(BOB), ['team/bob-secret:1', 'team/public:1', 'team/staff-only:1']);
});

test('group ACLs count: a member of the group sees the pull', async (t) => {
  const carol = { authentication: 'good:carol:staff::1002:101' };
  t.deepEqual(await queueOf(carol), ['team/public:1', 'team/staff-only:1']);
});

test('an admin of the system sees every pull', async (t) => {
  t.deepEqual(await queueOf(ROOT), ['team/alice-secret:1', 'team/bob-secret:1', 'team/public:1', 'team/staff-only:1']);
});

test('a bad credential is refused, not treated as anonymous', async (t) => {
  const r = await api.call('GET', '/api/queue/sys/', { authentication: 'bad:alice:users' });
  t.is(r.status, 401);
  t.regex(String(r.json.error), /mock authentication failed/);
});
