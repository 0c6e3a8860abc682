/**
 * systemd's readiness protocol as the units in packaging/systemd/ use it: the addon's datagram,
 * common/systemd-notify.ts, and the real gateway and shifterd telling a socket the test binds
 * when they serve, reload and stop.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { loadAddon } from '../../common/native-addon.js';
import { systemdNotifier } from '../../common/systemd-notify.js';
import { bindNotifySocket } from '../helpers/notify-socket.js';
import { siteGatewayConfig, startGateway } from '../helpers/gateway.js';
import { rootTest } from '../helpers/privileges.js';
import { ShifterdFixture } from '../node-daemon/runtime-fixture.js';

const silent = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'systemd-notify-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

let sockets = 0;
const socketPath = (): string => join(dir, `notify-${++sockets}.sock`);

test('the addon sends one datagram to a socket path', async (t) => {
  const receiver = await bindNotifySocket(socketPath());
  t.teardown(() => receiver.stop());
  loadAddon().notifyDatagram(receiver.path, 'READY=1');
  loadAddon().notifyDatagram(receiver.path, 'STOPPING=1');
  t.deepEqual(await receiver.waitFor(2), ['READY=1', 'STOPPING=1']);
});

test('an @name is an abstract socket', async (t) => {
  const receiver = await bindNotifySocket(`@shifter-notify-test-${process.pid}`);
  t.teardown(() => receiver.stop());
  loadAddon().notifyDatagram(receiver.path, 'READY=1');
  t.deepEqual(await receiver.waitFor(1), ['READY=1']);
});

test('a socket nobody listens on is an error naming sendto', (t) => {
  const missing = t.throws(() => loadAddon().notifyDatagram(join(dir, 'nobody.sock'), 'READY=1'));
  t.regex(missing.message, /^sendto: No such file or directory/);
  const abstract = t.throws(() => loadAddon().notifyDatagram(`@shifter-nobody-${process.pid}`, 'READY=1'));
  t.regex(abstract.message, /^sendto: Connection refused/);
});

test('a relative or oversized socket path is refused before any syscall', (t) => {
  t.throws(() => loadAddon().notifyDatagram('run/notify', 'READY=1'), { message: /absolute or start with '@'/ });
  t.throws(() => loadAddon().notifyDatagram(`/${'x'.repeat(200)}`, 'READY=1'), { message: /too long/ });
});

test('without NOTIFY_SOCKET nothing is sent and the addon is never loaded', async (t) => {
  let loaded = false;
  const notify = await systemdNotifier(silent, {}, async () => {
    loaded = true;
    return () => t.fail('sent without NOTIFY_SOCKET');
  });
  notify('READY=1');
  t.false(loaded);
});

test('NOTIFY_SOCKET is read once and taken out of the environment children inherit', async (t) => {
  const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/systemd/notify', PATH: '/bin' };
  const sent: Array<[string, string]> = [];
  const notify = await systemdNotifier(silent, env, async () => (path, message) => sent.push([path, message]));
  t.deepEqual(env, { PATH: '/bin' });
  notify('READY=1');
  notify('STOPPING=1');
  t.deepEqual(sent, [
    ['/run/systemd/notify', 'READY=1'],
    ['/run/systemd/notify', 'STOPPING=1'],
  ]);
});

test('a failed send is logged, not thrown', async (t) => {
  const lines: string[] = [];
  const log = pino({ level: 'info' }, { write: (s: string) => lines.push(s) });
  const notify = await systemdNotifier(log, { NOTIFY_SOCKET: join(dir, 'gone.sock') });
  t.notThrows(() => notify('READY=1'));
  const entry = JSON.parse(lines.join('')) as { msg: string; err: string };
  t.is(entry.msg, 'cannot notify systemd');
  t.regex(entry.err, /^sendto: No such file or directory/);
});

test('the gateway says READY=1 once it answers and STOPPING=1 when told to stop', async (t) => {
  const receiver = await bindNotifySocket(socketPath());
  t.teardown(() => receiver.stop());
  const gateway = await startGateway({
    config: siteGatewayConfig(join(dir, 'gateway'), 'http://127.0.0.1:9'),
    dir,
    env: { NOTIFY_SOCKET: receiver.path },
    timeoutMs: 120_000,
  });
  t.teardown(() => gateway.kill9());
  t.deepEqual(await receiver.waitFor(1), ['READY=1']);
  t.is(await gateway.stop(), 0);
  t.deepEqual(await receiver.waitFor(2), ['READY=1', 'STOPPING=1']);
});

rootTest('shifterd says READY=1 when serving, RELOADING=1 and READY=1 around a reload, STOPPING=1', async (t) => {
  const receiver = await bindNotifySocket(socketPath());
  const fixture = new ShifterdFixture();
  t.teardown(async () => {
    await fixture.cleanup();
    await receiver.stop();
  });
  // The fixture starts shifterd with this process's environment.
  process.env.NOTIFY_SOCKET = receiver.path;
  try {
    await fixture.start();
  } finally {
    delete process.env.NOTIFY_SOCKET;
  }
  t.deepEqual(await receiver.waitFor(1), ['READY=1']);
  fixture.daemon!.kill('SIGHUP');
  t.deepEqual(await receiver.waitFor(3), ['READY=1', 'RELOADING=1', 'READY=1']);
  t.is((await fixture.run(['--image', fixture.images.bare.name, 'echo', 'after-reload'])).stdout, 'after-reload\n');
  t.is(await fixture.stop(), 0);
  t.deepEqual(await receiver.waitFor(4), ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
});
