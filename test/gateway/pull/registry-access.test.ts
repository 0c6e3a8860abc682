/** The registry allow-list and the pull policy keys of imagemanager.json. */
import test from 'ava';
import { ShifterError } from '../../../common/errors.js';
import { parseGatewayConfig } from '../../../gateway/config/imagemanager.js';
import { registryAccess, registryKey } from '../../../gateway/pull/registry-access.js';
import { decidePull, failureWindowSec } from '../../../gateway/pull/rules.js';
import { newPullRecord, type ImageRecord, type RecordKey } from '../../../gateway/store/record.js';

const PLATFORMS = { sys: { accesstype: 'local', local: { imageDir: '/images' } } };

function config(extra: Record<string, unknown> = {}) {
  return parseGatewayConfig({ CacheDirectory: '/c', ExpandDirectory: '/e', Platforms: PLATFORMS, ...extra }).config;
}

test('defaults: only Locations and DefaultImageLocation, a 2 h deadline, WorkerThreads - 1 pulls per registry', (t) => {
  const c = config({ WorkerThreads: 4, Locations: { 'registry.site.org': { url: 'https://registry.site.org' } } });
  t.deepEqual(c.pullPolicy, { allowedRegistries: [], pullDeadlineSec: 7200, registryConcurrency: 3 });
  t.is(config().pullPolicy.registryConcurrency, 1);
  t.is(registryAccess('registry.site.org', c), 'configured');
  t.is(registryAccess('index.docker.io', c), 'configured');
  // Docker Hub's names are one registry.
  t.is(registryAccess('docker.io', c), 'configured');
  t.is(registryKey('Registry-1.Docker.IO'), registryKey('docker.io'));
  const err = t.throws(() => registryAccess('127.0.0.1:5000', c), { instanceOf: ShifterError });
  t.is(err?.code, 'PERMISSION_DENIED');
  t.is(
    err?.message,
    'this gateway does not pull from 127.0.0.1:5000; it pulls from registry.site.org, index.docker.io. ' +
      "Use one of those, or ask the site's admins to add the registry to Locations or AllowedRegistries",
  );
});

test('AllowedRegistries patterns: exact host (default port only), host:port, host:*, *.domain', (t) => {
  const c = config({
    AllowedRegistries: ['ghcr.io', 'quay.example.org:5000', 'lab.example.org:*', '*.hpc.example.org'],
  });
  const allowed = [
    'ghcr.io',
    'GHCR.io',
    'quay.example.org:5000',
    'lab.example.org',
    'lab.example.org:8443',
    'a.hpc.example.org',
    'x.y.hpc.example.org',
  ];
  for (const host of allowed) t.is(registryAccess(host, c), 'pattern', host);
  const refused = [
    'ghcr.io:22',
    'quay.example.org',
    'quay.example.org:5001',
    'hpc.example.org',
    'evilhpc.example.org',
    'ghcr.io.evil.org',
  ];
  for (const host of refused) t.throws(() => registryAccess(host, c), { instanceOf: ShifterError }, host);
});

test('pull policy keys: bad values name the key and the fix', (t) => {
  t.throws(() => config({ AllowedRegistries: ['https://ghcr.io'] }), {
    message:
      /AllowedRegistries has "https:\/\/ghcr\.io", which is not host\[:port\|:\*\] or \*\.domain.*; write e\.g\./,
  });
  t.throws(() => config({ AllowedRegistries: 5 }), {
    message: /AllowedRegistries must be a string or a list of strings/,
  });
  t.throws(() => config({ PullDeadline: 0 }), { message: /PullDeadline must be an integer >= 1/ });
  t.throws(() => config({ RegistryConcurrency: 'many' }), { message: /RegistryConcurrency must be an integer >= 1/ });
  const { warnings } = parseGatewayConfig({
    CacheDirectory: '/c',
    ExpandDirectory: '/e',
    Platforms: PLATFORMS,
    PullDeadline: 60,
    RegistryConcurrency: 2,
  });
  t.deepEqual(warnings, []);
});

function failure(lastPull: number): ImageRecord {
  const pull = newPullRecord('k' as RecordKey, {
    system: 'sys',
    itype: 'docker',
    pulltag: 'a:1',
    requesterUid: null,
    userACL: [],
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: lastPull,
  });
  return { ...pull, status: 'FAILURE', status_message: 'boom' };
}

test('a FAILURE is shown for PullUpdateTimeout after it failed, and never for less than 10 s', (t) => {
  const t0 = { pullUpdateTimeoutSec: 0, heartbeatTimeoutSec: 3600 };
  t.is(failureWindowSec(t0), 10);
  t.is(failureWindowSec({ ...t0, pullUpdateTimeoutSec: 300 }), 300);
  const input = (age: number) => ({ pending: failure(1000), ready: null, userACL: [], groupACL: [], now: 1000 + age });
  t.is(decidePull(input(9), t0).action, 'return');
  t.is(decidePull(input(11), t0).action, 'start');
});
