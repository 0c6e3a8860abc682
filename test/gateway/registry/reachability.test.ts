/**
 * Registries that do not answer: honest per-attempt timeouts (connect, answer) that fail a silent
 * host in about two timeouts, and for user-named registries a guard on where the client connects
 * and failures that read "could not reach" whatever the port did.
 */
import test from 'ava';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { ShifterError } from '../../../common/errors.js';
import { RegistryClient } from '../../../gateway/registry/client.js';
import { createConnectGuard, isRefusedAddress, type ConnectGuard } from '../../../gateway/registry/address-guard.js';
import { startFaultyRegistry } from '../../helpers/faulty-registry.js';
import { imageConfig, pushImage, startRegistry } from '../../helpers/registry.js';

const log = pino({ level: 'silent' });
// Serial, with timeouts of seconds: a test worker's event loop stalls on a loaded machine (and
// while openssl makes a certificate), and a timer that fires late must not pass for a timeout.
const FAST = { connectTimeoutMs: 2000, responseTimeoutMs: 2500, attempts: 5, backoffMs: 20 };

test.serial('a silent plain-http registry fails after two honest answer timeouts, not five', async (t) => {
  const silent = await startFaultyRegistry('silent');
  t.teardown(() => silent.stop());
  const c = new RegistryClient({ baseUrl: silent.url, authMethod: 'token' }, log, FAST);
  const started = Date.now();
  const err = await t.throwsAsync(c.resolve('a/b', '1'), { instanceOf: ShifterError });
  const elapsed = Date.now() - started;
  t.is(err?.code, 'UNREACHABLE');
  t.regex(
    err?.message ?? '',
    /127\.0\.0\.1:\d+ accepted the connection but did not answer within 2\.5 s \(2 attempts\)/,
  );
  t.is(silent.connections, 2);
  t.true(elapsed >= 4900 && elapsed < 15_000, `${elapsed} ms`);
});

test.serial('a silent https registry fails on the connect timeout (no TLS handshake), once per attempt', async (t) => {
  const silent = await startFaultyRegistry('silent');
  t.teardown(() => silent.stop());
  const c = new RegistryClient({ baseUrl: `https://${silent.host}`, authMethod: 'token' }, log, FAST);
  const started = Date.now();
  const err = await t.throwsAsync(c.resolve('a/b', '1'), { instanceOf: ShifterError });
  const elapsed = Date.now() - started;
  t.regex(err?.message ?? '', /could not connect to 127\.0\.0\.1:\d+ within 2 s \(2 attempts\)/);
  t.true(elapsed >= 3900 && elapsed < 7500, `${elapsed} ms: each attempt took its timeout, not twice it`);
});

test.serial('an always-500 registry is retried and then reported with its status', async (t) => {
  const broken = await startFaultyRegistry('always-500');
  t.teardown(() => broken.stop());
  const c = new RegistryClient({ baseUrl: broken.url, authMethod: 'token' }, log, { ...FAST, attempts: 3 });
  const err = await t.throwsAsync(c.resolve('a/b', '1'), { instanceOf: ShifterError });
  t.is(err?.code, 'REGISTRY_ERROR');
  t.regex(err?.message ?? '', /kept failing with HTTP 500 \(3 attempts\)/);
  t.is(broken.requests.length, 3);
});

/** A guard standing in for DNS + the address policy: every name is 127.0.0.1. */
const loopbackGuard: ConnectGuard = { resolve: async () => ({ address: '127.0.0.1', family: 4 }) };

test.serial(
  'user-named registry: closed, plain-http, untrusted-TLS and silent ports read "could not reach"',
  async (t) => {
    const closed = await startFaultyRegistry('closed');
    const silent = await startFaultyRegistry('silent');
    const plain = http.createServer((_req, res) => res.end('hello'));
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const tls = await startRegistry({ tls: true });
    t.teardown(async () => {
      await silent.stop();
      await new Promise((r) => plain.close(r));
      await tls.stop();
    });
    const ports = [closed.port, silent.port, (plain.address() as AddressInfo).port, Number(new URL(tls.url).port)];
    const messages: string[] = [];
    for (const port of ports) {
      const c = new RegistryClient({ baseUrl: `https://127.0.0.1:${port}`, authMethod: 'token' }, log, {
        ...FAST,
        guard: loopbackGuard,
      });
      const err = await t.throwsAsync(c.resolve('a/b', '1'), { instanceOf: ShifterError });
      t.is(err?.code, 'UNREACHABLE');
      messages.push((err?.message ?? '').replace(String(port), 'PORT'));
    }
    t.deepEqual(new Set(messages).size, 1, messages.join('\n'));
    t.is(messages[0], 'could not reach 127.0.0.1:PORT; check the registry name in the image reference');
  },
);

test.serial('a guarded client connects to the address the guard checked, not to what DNS says later', async (t) => {
  const reg = await startRegistry();
  t.teardown(() => reg.stop());
  const pushed = await pushImage(reg.url, 'g/app', '1', { layers: [Buffer.from('layer')], config: imageConfig({}) });
  const asked: string[] = [];
  const guard: ConnectGuard = {
    resolve: async (host) => {
      asked.push(host);
      return { address: '127.0.0.1', family: 4 };
    },
  };
  // registry.test is in no DNS: only the guard's answer can take the client there.
  const c = new RegistryClient({ baseUrl: `http://registry.test:${new URL(reg.url).port}`, authMethod: 'token' }, log, {
    guard,
  });
  t.is((await c.resolve('g/app', '1')).manifestDigest, pushed.manifestDigest);
  t.true(asked.length >= 2 && asked.every((h) => h === 'registry.test'));
});

test.serial(
  'the guard refuses names and literals that reach this machine or link-local, before connecting',
  async (t) => {
    const silent = await startFaultyRegistry('silent');
    t.teardown(() => silent.stop());
    const lookups: Record<string, string[]> = {
      'inside.test': ['127.0.0.1'],
      'mixed.test': ['192.0.2.7', '169.254.169.254'],
    };
    const guard = createConnectGuard(new Set(['10.1.2.3']), async (h) =>
      (lookups[h] ?? []).map((address) => ({ address, family: 4 })),
    );
    for (const host of [
      'inside.test',
      'mixed.test',
      '127.0.0.1',
      '[::1]',
      '[::ffff:127.0.0.1]',
      '169.254.169.254',
      '10.1.2.3',
    ]) {
      const c = new RegistryClient({ baseUrl: `http://${host}:${silent.port}`, authMethod: 'token' }, log, {
        ...FAST,
        guard,
      });
      const err = await t.throwsAsync(c.resolve('a/b', '1'), { instanceOf: ShifterError }, host);
      t.is(err?.code, 'PERMISSION_DENIED', host);
      t.regex(err?.message ?? '', /resolves to an address the gateway does not connect to for users; .*Locations/);
    }
    t.is(silent.connections, 0);
    t.deepEqual(await guard.resolve('192.0.2.7').catch((e: Error) => e.message), { address: '192.0.2.7', family: 4 });
  },
);

test.serial('isRefusedAddress: loopback, link-local, unspecified, multicast, IPv4-mapped and own addresses', (t) => {
  const own = new Set(['10.1.2.3', 'fd00::5']);
  for (const a of [
    '127.0.0.1',
    '127.9.9.9',
    '::1',
    '0.0.0.0',
    '::',
    '169.254.169.254',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '224.0.0.1',
    'ff02::1',
    '10.1.2.3',
    'FD00::5',
  ]) {
    t.true(isRefusedAddress(a, own), a);
  }
  for (const a of ['192.0.2.7', '10.1.2.4', '172.16.0.1', '2001:db8::1', '8.8.8.8'])
    t.false(isRefusedAddress(a, own), a);
  t.true(isRefusedAddress('not-an-address', own));
});
