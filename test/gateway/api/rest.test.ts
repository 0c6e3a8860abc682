/**
 * The REST surface as an upstream client sees it, through app.inject() (mock auth, a registry that
 * refuses connections).
 */
import test from 'ava';
import { RECORD_KEYS } from '../../../gateway/api/response.js';
import { ALICE, startApi, type ApiUnderTest } from './api-under-test.js';

let api: ApiUnderTest;

test.before(async () => {
  api = await startApi();
});

test.after.always(async () => {
  await api?.close();
});

const MOCK = ALICE;

function call(method: 'GET' | 'POST', path: string, headers: Record<string, string> = {}, body?: string) {
  return api.call(method, path, headers, body);
}

test('GET / is a text help listing the routes', async (t) => {
  const r = await call('GET', '/');
  t.is(r.status, 200);
  t.is(r.type, 'text/plain; charset=utf-8', "as upstream's Sanic text()");
  t.regex(r.text, /\/api\/lookup\/<system>\/<type>\/<tag>\//);
});

test('pull returns upstream\'s 13-key record at once, "MISSING" for unknown values, :latest added', async (t) => {
  const r = await call('POST', '/api/pull/sys/docker/team/app/', MOCK);
  t.is(r.status, 200);
  t.deepEqual(Object.keys(r.json).sort(), [...RECORD_KEYS].sort());
  t.is(r.json.status, 'PENDING');
  t.is(r.json.id, 'MISSING');
  t.is(r.json.ENV, 'MISSING');
  t.is(r.json.system, 'sys');
  t.is(r.json.itype, 'docker');
  t.deepEqual(r.json.tag, []);
  t.is(typeof r.json.last_pull, 'number');
  const again = await call('POST', '/api/pull/sys/docker/team/app:latest/', MOCK, '');
  t.is(again.status, 200, 'an empty body is accepted');
  t.deepEqual(again.json.last_pull, r.json.last_pull, 'the second pull joins the first');
  const queue = await call('GET', '/api/queue/sys/', MOCK);
  t.true((queue.json.list as { image: string }[]).some((q) => q.image === 'team/app:latest'));
});

test('a system named like an Object member (constructor, toString) is an unknown system, not a platform', async (t) => {
  for (const system of ['constructor', 'toString', '__proto__']) {
    const pull = await call('POST', `/api/pull/${system}/docker/team/app/`, MOCK);
    t.is(pull.status, 404, `pull on ${system}`);
    t.regex(String(pull.json.error), /is not configured on this gateway/);
    const list = await call('GET', `/api/list/${system}/`);
    t.is(list.status, 404, `list on ${system}`);
  }
});

test('a failing pull ends in FAILURE with the reason in status_message', async (t) => {
  await call('POST', '/api/pull/sys/docker/team/broken:1/', MOCK);
  let rec: Record<string, unknown> = {};
  for (let i = 0; i < 120; i++) {
    rec = (await call('POST', '/api/pull/sys/docker/team/broken:1/', MOCK)).json;
    if (rec.status === 'FAILURE') break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.is(rec.status, 'FAILURE');
  t.regex(String(rec.status_message), /127\.0\.0\.1:9/);
});

test('?progress=1 adds a progress key; without it the record keeps 13 keys', async (t) => {
  const r = await call('POST', '/api/pull/sys/docker/team/prog:1/?progress=1', MOCK);
  t.true('progress' in r.json);
  t.is(Object.keys(r.json).length, 14);
});

test("lookup and list: 404 in upstream's body for an unknown image, empty list, unknown system", async (t) => {
  const look = await call('GET', '/api/lookup/sys/docker/nothing/', MOCK);
  t.is(look.status, 404);
  t.deepEqual(look.json, {
    status: 404,
    error: 'image docker:nothing:latest is not available on sys; pull it first (shifterimg pull nothing:latest)',
    message: 'Not Found: /api/lookup/sys/docker/nothing/',
  });
  const list = await call('GET', '/api/list/sys/', MOCK);
  t.deepEqual(list, { status: 200, json: { list: [] }, text: '{"list":[]}', type: list.type });
  const sys = await call('GET', '/api/list/other/');
  t.is(sys.status, 404);
  t.regex(String(sys.json.error), /^Bad session or system: system "other" is not configured/);
  const noSlash = await call('GET', '/api/list/sys');
  t.is(noSlash.status, 200);
});

test('bad requests: invalid reference, bad ids, bad JSON, wrong type, unknown route, bad mock header', async (t) => {
  const ref = await call('POST', '/api/pull/sys/docker/Bad Name/', MOCK);
  t.is(ref.status, 400);
  t.regex(String(ref.json.error), /invalid image reference/);
  const ids = await call(
    'POST',
    '/api/pull/sys/docker/a/',
    { ...MOCK, 'content-type': 'application/json' },
    '{"allowed_uids": "bob"}',
  );
  t.is(ids.status, 400);
  t.regex(String(ids.json.error), /allowed_uids must be numeric ids/);
  const json = await call('POST', '/api/pull/sys/docker/a/', { ...MOCK, 'content-type': 'application/json' }, '{nope');
  t.is(json.status, 400);
  t.regex(String(json.json.error), /not valid JSON/);
  const type = await call('POST', '/api/pull/sys/custom/a/', MOCK);
  t.is(type.status, 400);
  t.regex(String(type.json.error), /type "custom" cannot be pulled/);
  const route = await call('GET', '/api/nothing/');
  t.deepEqual(route.json, {
    status: 404,
    error: 'no such route: GET /api/nothing/; GET / lists the routes',
    message: 'Not Found: /api/nothing/',
  });
  const mock = await call('GET', '/api/list/sys/', { authentication: 'bad:alice:users' });
  t.is(mock.status, 401);
  t.regex(String(mock.json.error), /mock authentication failed/);
});
