/**
 * The metrics routes in-process: upstream's `/api/metrics/<system>/` (admins only, `limit=`, the
 * lookup records as upstream returns them) and who may scrape the Prometheus `/metrics`.
 */
import test from 'ava';
import { readyPull } from './ready-image.js';
import { ALICE, ROOT, startApi, type ApiUnderTest } from './api-under-test.js';

const ID = 'c'.repeat(64);
let api: ApiUnderTest;

test.before(async () => {
  api = await startApi({ Metrics: true, MetricsAllow: ['127.0.0.1', '10.1.0.0/16'] });
  const rec = await api.store.createPull({
    system: 'sys',
    itype: 'docker',
    pulltag: 'team/app:1',
    requesterUid: null,
    userACL: [],
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: 1000,
  });
  await api.store.completePull(rec.key, readyPull(ID));
});

test.after.always(async () => {
  await api?.close();
});

test.serial('admins get the last N lookups, oldest first, each with the upstream fields', async (t) => {
  for (const who of [ALICE, ROOT, ALICE]) {
    t.is((await api.call('GET', '/api/lookup/sys/docker/team/app:1/', who)).status, 200);
  }
  const before = Date.now() / 1000;
  const r = await api.call('GET', '/api/metrics/sys/?limit=2', ROOT);
  t.is(r.status, 200, r.text);
  const list = JSON.parse(r.text) as Record<string, unknown>[];
  t.deepEqual(
    list.map((m) => [m.user, m.uid]),
    [
      ['root', 0],
      ['alice', 1000],
    ],
  );
  for (const m of list) {
    t.deepEqual(Object.keys(m).sort(), ['id', 'system', 'tag', 'time', 'type', 'uid', 'user']);
    t.like(m, { system: 'sys', type: 'docker', tag: 'team/app:1', id: ID });
    t.true(typeof m.time === 'number' && m.time <= before && m.time > before - 60);
  }
  const all = JSON.parse((await api.call('GET', '/api/metrics/sys/', ROOT)).text) as unknown[];
  t.is(all.length, 3, 'the default limit is 10');
});

test.serial('a user who is not an admin gets 403, an anonymous caller 401', async (t) => {
  const alice = await api.call('GET', '/api/metrics/sys/', ALICE);
  t.is(alice.status, 403);
  t.regex(String(alice.json.error), /metrics of sys are for its admins \(Platforms\.sys\.admins\); alice is not one/);
  const anon = await api.call('GET', '/api/metrics/sys/');
  t.is(anon.status, 401);
  t.is((await api.call('GET', '/api/metrics/nosuch/', ROOT)).status, 404);
  t.is((await api.call('GET', '/api/metrics/sys/?limit=0', ROOT)).status, 400);
});

test.serial('/metrics answers the addresses MetricsAllow lists, in the Prometheus text format', async (t) => {
  const local = await api.call('GET', '/metrics', {}, undefined, '127.0.0.1');
  t.is(local.status, 200, local.text);
  t.regex(local.type ?? '', /^text\/plain; version=0\.0\.4/);
  t.regex(local.text, /^shifter_gateway_pulls_total\{outcome="ready"\} 0$/m);
  t.regex(local.text, /^shifter_gateway_store_operation_seconds_count\{operation="findReadyByTag"\} [1-9]\d*$/m);
  t.is((await api.call('GET', '/metrics', {}, undefined, '10.1.200.3')).status, 200, 'inside the CIDR block');
  t.is(
    (await api.call('GET', '/metrics', {}, undefined, '::ffff:10.1.0.9')).status,
    200,
    'IPv4 on a dual-stack socket',
  );
  const outside = await api.call('GET', '/metrics', {}, undefined, '10.2.0.1');
  t.is(outside.status, 403);
  t.regex(String(outside.json.error), /10\.2\.0\.1 may not scrape \/metrics; add it to MetricsAllow/);
});

test('MetricsAllow must be "all" or addresses and CIDR blocks', async (t) => {
  await t.throwsAsync(startApi({ MetricsAllow: ['10.0.0.0/33'] }), {
    message: /MetricsAllow has "10\.0\.0\.0\/33", which is not an IP address or CIDR block/,
  });
  const open = await startApi({ MetricsAllow: 'all' });
  t.teardown(() => open.close());
  t.is((await open.call('GET', '/metrics', {}, undefined, '192.0.2.7')).status, 200);
  const byDefault = await startApi();
  t.teardown(() => byDefault.close());
  t.is((await byDefault.call('GET', '/metrics', {}, undefined, '192.0.2.7')).status, 403, 'loopback only by default');
  t.is((await byDefault.call('GET', '/metrics', {}, undefined, '::1')).status, 200);
});
