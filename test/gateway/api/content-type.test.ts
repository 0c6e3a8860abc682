/**
 * Upstream's C `shifterimg` accepts only `Content-Type: application/json`, exactly (issue 7 item
 * 8: with fastify's `; charset=utf-8` it printed nothing). Every route and every error, including
 * those fastify makes itself, answers with that type, and every error has the one body shape.
 * Errors no request object exists for (bad framing, timeouts) are in slow-clients.test.ts.
 */
import test from 'ava';
import { ALICE, startApi, type Answer, type ApiUnderTest } from './api-under-test.js';

let api: ApiUnderTest;

test.before(async () => {
  api = await startApi();
});

test.after.always(async () => {
  await api?.close();
});

function assertErrorShape(t: import('ava').ExecutionContext, r: Answer, status: number, url: string) {
  t.is(r.status, status, r.text);
  t.is(r.type, 'application/json', `Content-Type of ${status} for ${url.slice(0, 60)}`);
  t.deepEqual(Object.keys(r.json), ['status', 'error', 'message'], r.text);
  t.is(r.json.status, status);
  t.true(typeof r.json.error === 'string' && r.json.error.length > 0);
  t.true(String(r.json.message).endsWith(`: ${url}`), String(r.json.message));
}

test('every route answers exactly application/json', async (t) => {
  const routes: ['GET' | 'POST', string, number][] = [
    ['POST', '/api/pull/sys/docker/team/ct:1/', 200],
    ['POST', '/api/pull/sys/docker/team/ct:1/?progress=1', 200],
    ['GET', '/api/list/sys/', 200],
    ['GET', '/api/list/sys/?progress=1', 200],
    ['GET', '/api/queue/sys/', 200],
    ['GET', '/api/lookup/sys/docker/team/ct:1/', 404],
    ['GET', '/api/expire/sys/docker/team/ct:1/', 404],
    ['GET', '/api/autoexpire/sys/', 403],
    ['GET', '/api/metrics/sys/?limit=3', 403],
    ['POST', '/api/doimport/sys/custom/x/', 400],
  ];
  for (const [method, url, status] of routes) {
    const r = await api.call(method, url, ALICE);
    t.is(r.status, status, `${method} ${url}: ${r.text}`);
    t.is(r.type, 'application/json', `${method} ${url}`);
  }
});

test('errors fastify produces itself keep the type and the one body shape', async (t) => {
  const longSystem = 's'.repeat(5000);
  const cases: [string, 'GET' | 'POST', string, number, string?][] = [
    ['a 5,000-character system name', 'GET', `/api/list/${longSystem}/`, 414],
    ['a bad percent-escape', 'GET', '/api/list/%zz/', 400],
    ['an unknown route', 'GET', '/api/nothing/', 404],
    ['a wrong method', 'GET', '/api/pull/sys/docker/a/', 404],
    ['an unknown image type', 'GET', '/api/lookup/sys/floppy/a/', 400],
    ['a bad query value', 'GET', '/api/list/sys/?progress=yes', 400],
    ['a body that is not JSON', 'POST', '/api/pull/sys/docker/a/', 400, '{nope'],
    ['a body that is a JSON list', 'POST', '/api/pull/sys/docker/a/', 400, '[1, 2]'],
    ['a body over 64 KiB', 'POST', '/api/pull/sys/docker/a/', 413, `{"allowed_uids": "${'1,'.repeat(40_000)}1"}`],
    ['an unknown system', 'GET', '/api/list/elsewhere/', 404],
    ['a bad credential', 'GET', '/api/list/sys/', 401],
  ];
  for (const [what, method, url, status, body] of cases) {
    const headers = what === 'a bad credential' ? { authentication: 'bad:x:y' } : ALICE;
    const r = await api.call(method, url, headers, body);
    assertErrorShape(t, r, status, url);
    t.notRegex(r.text, /\bat [\w.]+ \(|node_modules|FST_ERR/, `${what}: no stack trace or fastify internals`);
  }
});

test('schema errors name the field and the fix', async (t) => {
  const type = await api.call('GET', '/api/lookup/sys/floppy/a/', ALICE);
  t.is(
    type.json.error,
    'the URL field imgtype must be one of docker, custom, id; use ' +
      '/api/<verb>/<system>/<type>/<tag>/ with type docker, custom, id; GET / lists the routes',
  );
  const list = await api.call('POST', '/api/pull/sys/docker/a/', ALICE, '[1, 2]');
  t.regex(String(list.json.error), /^the request body must be object; send \{"allowed_uids"/);
  const long = await api.call('GET', `/api/list/${'s'.repeat(5000)}/`, ALICE);
  t.regex(String(long.json.error), /longer than 2048 characters/);
});
