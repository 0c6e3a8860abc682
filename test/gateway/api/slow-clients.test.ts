/**
 * The real gateway process against clients that hold connections (issue 7 item 4: 20,600
 * connections that sent headers and no body used every file descriptor) and against requests
 * that are not HTTP/1.x (item 9). Real sockets on loopback only; the misbehaving clients connect
 * from other 127.0.0.x addresses than the well-behaved one, as separate hosts would.
 */
import test from 'ava';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { parseAnswer, rawConnect, type RawExchange } from './raw-client.js';

let dir: string;
/** Short timeouts: RequestTimeout 2 s, HeadersTimeout 1 s. */
let quick: RunningGateway;
/** Long timeouts and at most 5 connections per client address. */
let capped: RunningGateway;

const portOf = (gw: RunningGateway) => Number(new URL(gw.url).port);

function baseConfig(name: string) {
  return {
    CacheDirectory: join(dir, name, 'cache'),
    ExpandDirectory: join(dir, name, 'expand'),
    Authentication: 'mock',
    DefaultImageLocation: '127.0.0.1:9',
    Locations: { '127.0.0.1:9': { url: 'http://127.0.0.1:9' } },
    Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, name, 'images') }, admins: ['root'] } },
  };
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-slow-'));
  // One directory each: startGateway names its config file by the millisecond.
  await Promise.all(['quick', 'capped'].map((name) => mkdir(join(dir, name))));
  [quick, capped] = await Promise.all([
    startGateway({ dir: join(dir, 'quick'), config: { ...baseConfig('quick'), RequestTimeout: 2, HeadersTimeout: 1 } }),
    startGateway({
      dir: join(dir, 'capped'),
      config: { ...baseConfig('capped'), RequestTimeout: 120, HeadersTimeout: 60, MaxConnectionsPerAddress: 5 },
    }),
  ]);
});

test.after.always(async () => {
  await Promise.all([quick?.stop(), capped?.stop()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const MOCK = { authentication: 'good:alice:users::1000:100' };
const HEADERS_ONLY =
  'POST /api/pull/sys/docker/team/app:1/ HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n' +
  `authentication: ${MOCK.authentication}\r\nContent-Length: 40\r\n\r\n`;

async function listAsNormalClient(gw: RunningGateway): Promise<{ status: number; type: string | null }> {
  const res = await fetch(`${gw.url}/api/list/sys/`, { headers: MOCK, signal: AbortSignal.timeout(10_000) });
  await res.text();
  return { status: res.status, type: res.headers.get('content-type') };
}

function assertOneShape(t: import('ava').ExecutionContext, ex: RawExchange, status: number) {
  const a = parseAnswer(ex.response);
  t.is(a.status, status, ex.response);
  t.is(a.headers['content-type'], 'application/json', ex.response);
  t.deepEqual(Object.keys(a.body as object), ['status', 'error', 'message'], ex.response);
  t.is((a.body as { status: number }).status, status);
}

test('the mock mode is announced in the log as insecure', (t) => {
  t.regex(quick.logs(), /mock authentication is enabled: it is insecure/);
});

test('slow and silent clients get 408 and are closed in time; a normal client is served meanwhile', async (t) => {
  const port = portOf(quick);
  const giveUpMs = 30_000;
  const headersOnly = Array.from({ length: 30 }, () =>
    rawConnect({ port, localAddress: '127.0.0.2', data: HEADERS_ONLY, giveUpMs }),
  );
  const trickling = Array.from({ length: 5 }, () =>
    rawConnect({
      port,
      localAddress: '127.0.0.2',
      data: HEADERS_ONLY,
      trickle: '{"allowed_uids": "1000", "allowed_gids": ""}',
      trickleMs: 300,
      giveUpMs,
    }),
  );
  const silent = Array.from({ length: 5 }, () => rawConnect({ port, localAddress: '127.0.0.2', giveUpMs }));
  const all = [...headersOnly, ...trickling, ...silent];
  await Promise.all(all.map((c) => c.connected));

  const normal = await listAsNormalClient(quick);
  t.deepEqual(normal, { status: 200, type: 'application/json' }, 'served while 40 connections hang');

  const results = await Promise.all(all.map((c) => c.done));
  for (const [i, ex] of results.entries()) {
    // 2 s RequestTimeout, checked every 0.5 s: well under 15 s even on a loaded machine.
    t.true(
      ex.closedAfterMs !== null && ex.closedAfterMs < 15_000,
      `connection ${i} closed by the gateway: ${ex.closedAfterMs} ms`,
    );
    assertOneShape(t, ex, 408);
  }
  t.regex(String((parseAnswer(results[0].response).body as { error: string }).error), /did not arrive in time/);
});

test('over the per-address cap: 503 at once; other addresses and later connections are served', async (t) => {
  const port = portOf(capped);
  const held = Array.from({ length: 5 }, () =>
    rawConnect({ port, localAddress: '127.0.0.3', data: HEADERS_ONLY, giveUpMs: 60_000 }),
  );
  await Promise.all(held.map((c) => c.connected));
  // The gateway counts a connection when it accepts it, a moment after the client sees it open.
  await new Promise((r) => setTimeout(r, 300));

  const extra = rawConnect({
    port,
    localAddress: '127.0.0.3',
    data: 'GET /api/list/sys/ HTTP/1.1\r\nHost: gw\r\n\r\n',
    giveUpMs: 20_000,
  });
  const refused = await extra.done;
  t.true(refused.closedAfterMs !== null && refused.closedAfterMs < 10_000, `closed after ${refused.closedAfterMs} ms`);
  assertOneShape(t, refused, 503);
  t.regex(
    String((parseAnswer(refused.response).body as { error: string }).error),
    /127\.0\.0\.3 already has 5 open connections/,
  );
  t.notRegex(refused.response, /"list"/, 'the request on a refused connection is not served');

  t.deepEqual(await listAsNormalClient(capped), { status: 200, type: 'application/json' }, 'another address is served');

  for (const c of held) c.close();
  await Promise.all(held.map((c) => c.done));
  await new Promise((r) => setTimeout(r, 300));
  const later = rawConnect({
    port,
    localAddress: '127.0.0.3',
    data: 'GET /api/list/sys/ HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n',
    giveUpMs: 20_000,
  });
  t.is(parseAnswer((await later.done).response).status, 200, 'closed connections no longer count');
  t.regex(capped.logs(), /connection refused: 127\.0\.0\.3 already has 5 open connections/);
});

test('HTTP/0.9-style and non-1.x requests are refused with 505, not served', async (t) => {
  const port = portOf(quick);
  for (const line of [
    'GET /api/list/sys/\r\n\r\n',
    'GET /api/list/sys/ HTTP/0.9\r\n\r\n',
    'GET /api/list/sys/ HTTP/2.0\r\nHost: gw\r\n\r\n',
  ]) {
    const ex = await rawConnect({ port, localAddress: '127.0.0.4', data: line, giveUpMs: 20_000 }).done;
    assertOneShape(t, ex, 505);
    t.notRegex(ex.response, /"list"/, JSON.stringify(line));
    t.not(ex.closedAfterMs, null, 'the connection is closed');
  }
  const ok = await rawConnect({
    port,
    localAddress: '127.0.0.4',
    data: 'GET /api/list/sys/ HTTP/1.0\r\n\r\n',
    giveUpMs: 20_000,
  }).done;
  t.is(parseAnswer(ok.response).status, 200, 'HTTP/1.0 is still served');
});

test('bad framing and oversized headers get the one error shape too', async (t) => {
  const port = portOf(quick);
  const garbage = await rawConnect({ port, localAddress: '127.0.0.5', data: 'HELLO THERE\r\n\r\n', giveUpMs: 20_000 })
    .done;
  assertOneShape(t, garbage, 400);
  const bigHeader = `GET /api/list/sys/ HTTP/1.1\r\nHost: gw\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
  const big = await rawConnect({ port, localAddress: '127.0.0.5', data: bigHeader, giveUpMs: 20_000 }).done;
  assertOneShape(t, big, 431);
});
