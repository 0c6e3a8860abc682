/** The HTTP server limits: imagemanager.json keys and the per-address connection counter. */
import test from 'ava';
import { ConnectionCounter } from '../../../gateway/api/connection-limit.js';
import { DEFAULT_HTTP_SERVER_LIMITS, parseGatewayConfig } from '../../../gateway/config/imagemanager.js';

const base = () => ({
  CacheDirectory: '/var/cache/shifter',
  ExpandDirectory: '/var/tmp/shifter',
  Platforms: { c: { accesstype: 'local', local: { imageDir: '/images' } } },
});

test('defaults are finite: bodies and headers time out, connections are capped', (t) => {
  const { config, warnings } = parseGatewayConfig(base());
  t.deepEqual(warnings, []);
  t.deepEqual(config.http, DEFAULT_HTTP_SERVER_LIMITS);
  t.true(config.http.requestTimeoutMs > 0 && config.http.requestTimeoutMs <= 60_000);
  t.true(config.http.headersTimeoutMs > 0 && config.http.headersTimeoutMs <= config.http.requestTimeoutMs);
  t.true(config.http.maxConnectionsPerAddress < config.http.maxConnections);
});

test('the keys are read in seconds and counts, without warnings', (t) => {
  const { config, warnings } = parseGatewayConfig({
    ...base(),
    RequestTimeout: 20,
    HeadersTimeout: 5,
    KeepAliveTimeout: 2,
    MaxConnectionsPerAddress: 10,
    MaxConnections: 100,
  });
  t.deepEqual(warnings, []);
  t.deepEqual(config.http, {
    requestTimeoutMs: 20_000,
    headersTimeoutMs: 5_000,
    keepAliveTimeoutMs: 2_000,
    maxConnectionsPerAddress: 10,
    maxConnections: 100,
  });
});

test('bad values name the key and the fix', (t) => {
  t.throws(() => parseGatewayConfig({ ...base(), RequestTimeout: 0 }), {
    message: /RequestTimeout must be an integer >= 1/,
  });
  t.throws(() => parseGatewayConfig({ ...base(), RequestTimeout: 5, HeadersTimeout: 10 }), {
    message:
      /HeadersTimeout \(10 s\) is longer than RequestTimeout \(5 s\); make HeadersTimeout at most RequestTimeout/,
  });
  t.throws(() => parseGatewayConfig({ ...base(), MaxConnections: 10, MaxConnectionsPerAddress: 20 }), {
    message: /MaxConnectionsPerAddress \(20\) is larger than MaxConnections \(10\)/,
  });
});

test('the counter refuses past either cap and forgets closed connections', (t) => {
  const c = new ConnectionCounter({ maxConnectionsPerAddress: 2, maxConnections: 3 });
  t.is(c.admit('10.0.0.1'), null);
  t.is(c.admit('10.0.0.1'), null);
  t.regex(c.admit('10.0.0.1') ?? '', /10\.0\.0\.1 already has 2 open connections/);
  t.is(c.admit('10.0.0.2'), null);
  t.regex(c.admit('10.0.0.3') ?? '', /3 open connections, its limit \(MaxConnections\)/);
  c.release('10.0.0.1');
  t.is(c.admit('10.0.0.3'), null, 'a closed connection frees a slot in all');
  c.release('10.0.0.1');
  t.is(c.admit('10.0.0.1'), null, 'and for its address');
});
