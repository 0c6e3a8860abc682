/**
 * The real bin/shifterimg against gateways that misbehave below HTTP: one that accepts and never
 * answers, one that closes without answering, one that stalls or cuts its answer, one that is
 * not an HTTP server, and a good one on a port fetch() refuses. Each ends in one line and the
 * documented exit code, never a hang or a silent exit.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startMunged, type Munged } from '../helpers/munge.js';
import { startGatewayDouble } from './gateway-double.js';
import { runShifterimg, type RunResult } from './run-shifterimg.js';

const SYSTEM = 'testsys';
const ID = '0123456789abcdef'.repeat(4);
let munged: Munged;
let dir: string;
let confCounter = 0;

test.before(async () => {
  munged = await startMunged();
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-transport-'));
});

test.after.always(async () => {
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function writeConf(gateways: string[], extra: string[] = []): Promise<string> {
  const file = join(dir, `udiRoot-${++confCounter}.conf`);
  const lines = [
    `system=${SYSTEM}`,
    `imageGateway=${gateways.join(' ')}`,
    `mungeSocketPath=${munged.socket}`,
    ...extra,
  ];
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

/** A TCP server on loopback that does `onConnection` with each client socket and counts them. */
async function rawServer(
  t: { teardown(fn: () => unknown): void },
  onConnection: (socket: Socket) => void,
): Promise<{ url: string; connections: () => number }> {
  const sockets = new Set<Socket>();
  let count = 0;
  const server: Server = createServer((socket) => {
    count++;
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
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, connections: () => count };
}

/** Waits for the end of the request head, then calls `then`. */
function afterRequestHead(socket: Socket, then: () => void): void {
  let head = '';
  socket.setEncoding('latin1').on('data', (d: string) => {
    if (head.includes('\r\n\r\n')) return;
    head += d;
    if (head.includes('\r\n\r\n')) then();
  });
}

function oneErrorLine(
  t: { is(a: unknown, b: unknown, m?: string): void; false(v: boolean, m?: string): void },
  r: RunResult,
): string {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  t.is(lines.length, 1, `exactly one stderr line, got: ${r.stderr}`);
  t.false(/\bat .*\.js:\d+/.test(r.stderr), 'no stack trace');
  return lines[0] ?? '';
}

const unreachable = (failures: string): string =>
  `shifterimg: cannot reach the image gateway (${failures}): ` +
  'check that it is running and that imageGateway in udiRoot.conf is right';

test('a gateway that accepts and never answers: exit 3 once gatewayTimeout has passed, saying so', async (t) => {
  const gw = await rawServer(t, () => undefined);
  const conf = await writeConf([gw.url], ['gatewayTimeout=1']);
  const started = Date.now();
  const r = await runShifterimg(['--config', conf, 'lookup', 'ubuntu']);
  const seconds = (Date.now() - started) / 1000;
  t.is(r.code, 3);
  t.is(r.stdout, '');
  t.is(oneErrorLine(t, r), unreachable(`${gw.url}: no answer within 1 s (gatewayTimeout)`));
  t.true(seconds >= 1 && seconds < 30, `took ${seconds} s`);
});

test('a gateway that closes the connection without answering: exit 3 with a message, each gateway tried', async (t) => {
  const afterRequest = await rawServer(t, (s) => afterRequestHead(s, () => s.destroy()));
  const atOnce = await rawServer(t, (s) => s.end());
  const conf = await writeConf([afterRequest.url, atOnce.url], ['gatewayTimeout=20']);
  for (const command of [['images'], ['lookup', 'ubuntu'], ['pull', 'ubuntu']]) {
    const r = await runShifterimg(['--config', conf, ...command]);
    t.is(r.code, 3, command.join(' '));
    t.is(r.stdout, '');
    const line = oneErrorLine(t, r);
    t.true(line.includes(`${afterRequest.url}: closed the connection without answering`), line);
    t.true(line.includes(`${atOnce.url}: closed the connection without answering`), line);
    t.true(line.startsWith('shifterimg: cannot reach the image gateway ('), line);
  }
});

test('a gateway that stops in the middle of its answer: exit 3, cut off or stalled', async (t) => {
  const head = 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{"list": [';
  const cut = await rawServer(t, (s) => afterRequestHead(s, () => s.end(head)));
  const stalled = await rawServer(t, (s) => afterRequestHead(s, () => s.write(head)));
  const r = await runShifterimg(['--config', await writeConf([cut.url], ['gatewayTimeout=20']), 'images']);
  t.is(r.code, 3);
  t.is(oneErrorLine(t, r), unreachable(`${cut.url}: closed the connection in the middle of its answer`));
  const s = await runShifterimg(['--config', await writeConf([stalled.url], ['gatewayTimeout=1']), 'images']);
  t.is(s.code, 3);
  t.is(oneErrorLine(t, s), unreachable(`${stalled.url}: no complete answer within 1 s (gatewayTimeout)`));
});

test('something that is not an HTTP server at imageGateway: exit 3 saying so', async (t) => {
  const ssh = await rawServer(t, (s) => s.end('SSH-2.0-OpenSSH_9.2\r\n'));
  const r = await runShifterimg(['--config', await writeConf([ssh.url], ['gatewayTimeout=20']), 'queue']);
  t.is(r.code, 3);
  t.is(
    oneErrorLine(t, r),
    unreachable(`${ssh.url}: answered with something that is not HTTP (is this the image gateway's address?)`),
  );
});

test('a silent gateway is given up for the next one in the list', async (t) => {
  const silent = await rawServer(t, () => undefined);
  const good = await startGatewayDouble({
    system: SYSTEM,
    lookup: { 'docker:ubuntu:latest': { id: ID, status: 'READY' } },
  });
  t.teardown(() => good.stop());
  const conf = await writeConf([silent.url, good.url], ['gatewayTimeout=1']);
  const r = await runShifterimg(['--config', conf, 'lookup', 'ubuntu']);
  t.is(r.stderr, '');
  t.is(r.code, 0);
  t.is(r.stdout, `${ID}\n`);
});

/**
 * Ports the WHATWG fetch standard blocks ("bad port"); curl, and so upstream shifterimg, use them
 * freely. Another test may hold one, so the first free one on a random loopback address is used.
 */
const FETCH_BLOCKED_PORTS = [10080, 6566, 4190, 3659, 6679, 1719];

test('a gateway on a port fetch() refuses (10080, "bad port") works', async (t) => {
  const script = { system: SYSTEM, lookup: { 'docker:ubuntu:latest': { id: ID, status: 'READY' } } };
  const byte = (): number => 1 + Math.floor(Math.random() * 250);
  const host = `127.${byte()}.${byte()}.${byte()}`;
  let gw;
  for (const port of FETCH_BLOCKED_PORTS) {
    gw = await startGatewayDouble(script, { host, port }).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') return undefined;
      throw e;
    });
    if (gw) break;
  }
  if (!gw) throw new Error(`all of ports ${FETCH_BLOCKED_PORTS.join(', ')} are in use on ${host}`);
  const double = gw;
  t.teardown(() => double.stop());
  const r = await runShifterimg(['--config', await writeConf([double.url], ['gatewayTimeout=20']), 'lookup', 'ubuntu']);
  t.is(r.stderr, '');
  t.is(r.code, 0);
  t.is(r.stdout, `${ID}\n`);
  t.is(double.requests[0]?.rawUrl, `/api/lookup/${SYSTEM}/docker/ubuntu%3Alatest/`);
});
