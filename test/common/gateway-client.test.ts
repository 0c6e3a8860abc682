/**
 * The shared gateway client against real servers on loopback: gateway doubles speaking the REST
 * routes, and raw TCP servers that misbehave below HTTP. What shifterimg and shifterd rely on:
 * failover, stickiness, a fresh credential per attempt, a deadline on every attempt.
 */
import test, { type ExecutionContext } from 'ava';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { interpretAnswer } from '../../common/gateway-client/answer.js';
import {
  ANONYMOUS,
  DEFAULT_GATEWAY_TIMEOUT_SECONDS,
  GatewayClient,
  gatewayTimeoutSeconds,
  type GatewayClientOptions,
} from '../../common/gateway-client/client.js';
import { GatewayAnswerError, GatewayUnreachableError } from '../../common/gateway-client/errors.js';
import { attemptFailure } from '../../common/gateway-client/transport-failure.js';
import { type ShifterError } from '../../common/errors.js';
import { parseImageDescriptor } from '../../common/image-descriptor.js';
import { closedPort, startGatewayDouble, type GatewayDouble } from '../cli/gateway-double.js';

const SYSTEM = 'testsys';
const ID = 'ab'.repeat(32);
const UBUNTU = parseImageDescriptor('ubuntu');
type Teardown = { teardown(fn: () => unknown): void };

function client(
  t: Teardown,
  over: Partial<GatewayClientOptions> & Pick<GatewayClientOptions, 'gateways'>,
): GatewayClient {
  const c = new GatewayClient({
    system: SYSTEM,
    gatewayTimeout: 20,
    credential: ANONYMOUS,
    shuffle: (items) => [...items],
    ...over,
  });
  t.teardown(() => c.close());
  return c;
}

async function double(t: Teardown, lookup: Record<string, unknown> = {}): Promise<GatewayDouble> {
  const gw = await startGatewayDouble({ system: SYSTEM, lookup });
  t.teardown(() => gw.stop());
  return gw;
}

/** A TCP server on loopback that does `onConnection` with each client socket. */
async function rawServer(t: Teardown, onConnection: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function unreachable(t: ExecutionContext, p: Promise<unknown>): Promise<GatewayUnreachableError> {
  const e: unknown = await t.throwsAsync(p);
  if (!(e instanceof GatewayUnreachableError)) throw new Error(`expected GatewayUnreachableError, got ${String(e)}`);
  return e;
}

test('the per-attempt deadline is finite: 30 s when gatewayTimeout is unset or 0 (upstream: none)', (t) => {
  t.is(DEFAULT_GATEWAY_TIMEOUT_SECONDS, 30);
  t.is(gatewayTimeoutSeconds(undefined), 30);
  t.is(gatewayTimeoutSeconds(0), 30);
  t.is(gatewayTimeoutSeconds(2.5), 2.5);
  const huge = gatewayTimeoutSeconds(1e12);
  t.true(
    Number.isFinite(huge) && huge * 1000 <= 2 ** 31 - 1,
    'longer than a Node timer can wait is capped, not fired at once',
  );
});

test('failover: dead and failing (5xx) gateways are skipped; the one that answered is asked first next', async (t) => {
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const failing = await startGatewayDouble({
    system: SYSTEM,
    override: { status: 503, body: { error: 'overloaded' } },
  });
  t.teardown(() => failing.stop());
  const good = await double(t, { 'docker:ubuntu:latest': { id: ID, status: 'READY' } });
  const c = client(t, { gateways: [dead, failing.url, good.url] });
  t.deepEqual(await c.lookup(UBUNTU), { id: ID, status: 'READY' });
  t.deepEqual(await c.lookup(UBUNTU), { id: ID, status: 'READY' });
  t.is(failing.requests.length, 1, 'asked once, then the answering gateway came first');
  t.is(good.requests.length, 2);
});

test('"not found" is final: the next gateway is not asked', async (t) => {
  const first = await double(t);
  const second = await double(t, { 'docker:ubuntu:latest': { id: ID, status: 'READY' } });
  const c = client(t, { gateways: [first.url, second.url] });
  const e = await t.throwsAsync(c.lookup(UBUNTU));
  t.is((e as ShifterError).code, 'NOT_FOUND');
  t.is(e?.message, 'image docker:ubuntu:latest not found');
  t.is(second.requests.length, 0);
});

test("5xx everywhere: the gateway's error; no answer anywhere: UNREACHABLE, gateway by gateway", async (t) => {
  const failing = await startGatewayDouble({
    system: SYSTEM,
    override: { status: 500, body: { error: 'database is down' } },
  });
  t.teardown(() => failing.stop());
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const e = await t.throwsAsync(client(t, { gateways: [dead, failing.url] }).list());
  t.true(e instanceof GatewayAnswerError);
  t.is(e?.message, `the image gateway at ${failing.url} failed (HTTP 500): database is down`);

  const dead2 = `http://127.0.0.1:${await closedPort()}`;
  const u = await unreachable(t, client(t, { gateways: [dead, dead2] }).queue());
  t.is(u.code, 'UNREACHABLE');
  t.deepEqual(u.failures, [
    { gateway: dead, errno: 'ECONNREFUSED', reason: 'connection refused' },
    { gateway: dead2, errno: 'ECONNREFUSED', reason: 'connection refused' },
  ]);
});

test('every attempt carries a fresh credential; an anonymous request carries none', async (t) => {
  const failing = await startGatewayDouble({ system: SYSTEM, override: { status: 502, body: 'bad gateway' } });
  t.teardown(() => failing.stop());
  const good = await double(t, { 'docker:ubuntu:latest': { id: ID, status: 'READY' } });
  let made = 0;
  const c = client(t, { gateways: [failing.url, good.url], credential: async () => `cred-${++made}` });
  await c.lookup(UBUNTU);
  await c.pull(UBUNTU, { uids: [1001], gids: [] }).catch(() => undefined);
  await c.lookup(UBUNTU, ANONYMOUS);
  t.is(failing.requests[0]?.headers.authentication, 'cred-1');
  t.deepEqual(
    good.requests.map((r) => r.headers.authentication),
    ['cred-2', 'cred-3', undefined],
  );
  t.is(good.requests[1]?.rawUrl, `/api/pull/${SYSTEM}/docker/ubuntu%3Alatest/?progress=1`);
  t.deepEqual(JSON.parse(good.requests[1]?.body ?? ''), { allowed_uids: '1001' });
});

test('a credential that cannot be made is AUTH_FAILED, and nothing is sent', async (t) => {
  const gw = await double(t);
  const c = client(t, { gateways: [gw.url], credential: () => Promise.reject(new Error('munged is down')) });
  const e = await t.throwsAsync(c.list());
  t.is((e as ShifterError).code, 'AUTH_FAILED');
  t.is(e?.message, 'cannot create a munge credential: munged is down');
  t.is(gw.requests.length, 0);
});

test('the deadline covers the whole attempt: a body that trickles in forever ends at gatewayTimeout', async (t) => {
  // Each byte comes well within undici's body (idle) timeout; only the attempt's deadline stops it.
  const url = await rawServer(t, (s) => {
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n');
      const timer = setInterval(() => s.write(' '), 100);
      s.on('close', () => clearInterval(timer));
    });
  });
  const started = Date.now();
  const e = await unreachable(t, client(t, { gateways: [url], gatewayTimeout: 1 }).list());
  const seconds = (Date.now() - started) / 1000;
  t.deepEqual(e.failures, [{ gateway: url, reason: 'no complete answer within 1 s (gatewayTimeout)' }]);
  t.true(seconds >= 1 && seconds < 20, `took ${seconds} s`);
});

test('an answer far larger than any gateway answer is refused', async (t) => {
  const url = await rawServer(t, (s) => {
    s.once('data', () => {
      s.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n');
      const chunk = Buffer.alloc(1024 * 1024, 0x20);
      const pump = (): void => {
        while (!s.destroyed && s.write(chunk));
        if (!s.destroyed) s.once('drain', pump);
      };
      pump();
    });
  });
  const e = await unreachable(t, client(t, { gateways: [url] }).list());
  t.deepEqual(e.failures, [{ gateway: url, reason: 'answered with more than 32 MiB, more than any gateway answer' }]);
});

test('a gateway URL keeps its path prefix; bad imageGateway entries are config errors naming the file', async (t) => {
  const seen: string[] = [];
  const server = createHttpServer((req: IncomingMessage, res) => {
    seen.push(req.url ?? '');
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"list": []}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/shifter/gw/`;
  t.deepEqual(await client(t, { gateways: [url] }).list(), { list: [] });
  t.deepEqual(seen, [`/shifter/gw/api/list/${SYSTEM}/`]);

  const bad = (entry: string) => () =>
    new GatewayClient({
      gateways: [entry],
      system: SYSTEM,
      gatewayTimeout: undefined,
      credential: ANONYMOUS,
      configFile: '/etc/udiRoot.conf',
    });
  t.throws(bad('imagegw:5000'), {
    message:
      "imageGateway entry 'imagegw:5000' in /etc/udiRoot.conf is not an http(s) URL: " +
      'write e.g. imageGateway=http://imagegw:5000',
  });
  t.throws(bad('ftp://imagegw'), { message: /is not an http\(s\) URL/ });
  t.throws(bad('http://me:secret@imagegw:5000'), { message: /has a user, password, query or fragment/ });
  const empty = new GatewayClient({ gateways: [], system: SYSTEM, gatewayTimeout: undefined, credential: ANONYMOUS });
  t.teardown(() => empty.close());
  await t.throwsAsync(empty.list(), { message: /^imageGateway is empty/ });
});

test('answers: statuses become the error a user can act on', (t) => {
  const answer = (status: number, body: unknown, location?: string) => () =>
    interpretAnswer({
      method: 'GET',
      url: 'http://gw/api/list/s/',
      status,
      body: typeof body === 'string' ? body : JSON.stringify(body),
      ...(location ? { location } : {}),
    });
  t.deepEqual(answer(200, { list: [] })(), { list: [] });
  const code = (f: () => unknown) => t.throws<ShifterError>(f)?.code;
  t.is(code(answer(200, 'not json')), 'REGISTRY_ERROR');
  t.is(code(answer(401, { error: 'Expired Credential' })), 'AUTH_FAILED');
  t.is(code(answer(404, { error: 'Bad session or system' })), 'NOT_FOUND');
  t.is(code(answer(400, { error: 'bad tag' })), 'BAD_ARGUMENT');
  t.throws(answer(302, '', 'https://gw/\u001b[2J'), {
    message:
      'the image gateway redirected http://gw/api/list/s/ to https://gw/ [2J: put the final address in imageGateway',
  });
  t.throws(answer(501, { error: 'expire' }), { message: 'this image gateway does not support that yet: expire' });
  t.throws(answer(418, ''), { message: 'the image gateway answered HTTP 418: no explanation given' });
});

test('transport failures: the phase tells "closed without answering" from "stopped halfway"', (t) => {
  const ctx = { gateway: 'http://gw', timeoutSeconds: 5, deadlinePassed: false };
  const socketClosed = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
  t.is(attemptFailure(socketClosed, { ...ctx, phase: 'waiting' }).reason, 'closed the connection without answering');
  t.is(
    attemptFailure(socketClosed, { ...ctx, phase: 'reading' }).reason,
    'closed the connection in the middle of its answer',
  );
  const aborted = Object.assign(new Error('This operation was aborted'), { code: 'UND_ERR_ABORTED' });
  t.is(
    attemptFailure(aborted, { ...ctx, phase: 'waiting', deadlinePassed: true }).reason,
    'no answer within 5 s (gatewayTimeout)',
  );
  const reset = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  t.deepEqual(attemptFailure(reset, { ...ctx, phase: 'reading' }), {
    gateway: 'http://gw',
    errno: 'ECONNRESET',
    reason: 'reset the connection in the middle of its answer',
  });
  const dns = Object.assign(new Error('getaddrinfo ENOTFOUND gw'), { code: 'ENOTFOUND' });
  t.deepEqual(attemptFailure(dns, { ...ctx, phase: 'waiting' }), {
    gateway: 'http://gw',
    errno: 'ENOTFOUND',
    reason: 'host name not found',
  });
  const tls = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  t.regex(attemptFailure(tls, { ...ctx, phase: 'waiting' }).reason, /^TLS failed \(self-signed certificate\)/);
});
