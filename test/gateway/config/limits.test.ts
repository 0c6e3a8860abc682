/** imagemanager.json `Limits`: defaults, byte suffixes, and errors that name the key and the fix. */
import test from 'ava';
import { DEFAULT_IMAGE_LIMITS, parseGatewayConfig } from '../../../gateway/config/imagemanager.js';

const base = () => ({
  CacheDirectory: '/var/cache/shifter',
  ExpandDirectory: '/var/tmp/shifter',
  Platforms: { c: { accesstype: 'local', local: { imageDir: '/images' } } },
});

test('without Limits every limit has its default', (t) => {
  const { config, warnings } = parseGatewayConfig(base());
  t.deepEqual(warnings, []);
  t.deepEqual(config.limits, DEFAULT_IMAGE_LIMITS);
  t.deepEqual(config.limits, {
    maxEntries: 2_000_000,
    maxExpandedBytes: 64 * 1024 ** 3,
    maxExpansionRatio: 100,
    maxLayerBytes: 16 * 1024 ** 3,
    maxImageBytes: 32 * 1024 ** 3,
  });
});

test('limits are set one by one; byte values take a binary suffix', (t) => {
  const { config, warnings } = parseGatewayConfig({
    ...base(),
    Limits: {
      MaxEntries: 5000,
      MaxExpandedBytes: '10G',
      MaxLayerBytes: '512M',
      MaxImageBytes: 2048,
      MaxExpansionRatio: 1000,
    },
  });
  t.deepEqual(warnings, []);
  t.deepEqual(config.limits, {
    maxEntries: 5000,
    maxExpandedBytes: 10 * 1024 ** 3,
    maxExpansionRatio: 1000,
    maxLayerBytes: 512 * 1024 ** 2,
    maxImageBytes: 2048,
  });
});

test('bad limits are refused naming the key; unknown ones are warned about', (t) => {
  t.throws(() => parseGatewayConfig({ ...base(), Limits: { MaxEntries: 0 } }), {
    message: /Limits\.MaxEntries must be a positive integer \(got 0\); write e\.g\. "MaxEntries": 2000000/,
  });
  t.throws(() => parseGatewayConfig({ ...base(), Limits: { MaxEntries: '2M' } }), {
    message: /Limits\.MaxEntries must be a positive integer/,
  });
  t.throws(() => parseGatewayConfig({ ...base(), Limits: { MaxLayerBytes: '16 parsecs' } }), {
    message: /Limits\.MaxLayerBytes .*"64G"/,
  });
  t.throws(() => parseGatewayConfig({ ...base(), Limits: [] }), { message: /Limits must be an object/ });
  const { warnings } = parseGatewayConfig({ ...base(), Limits: { MaxInodes: 1 } });
  t.deepEqual(warnings, [
    'imagemanager.json: unknown key Limits.MaxInodes ignored ' +
      '(known: MaxEntries, MaxExpandedBytes, MaxExpansionRatio, MaxLayerBytes, MaxImageBytes)',
  ]);
});
