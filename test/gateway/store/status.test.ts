import test from 'ava';
import { canMove, IMAGE_STATUSES, isInFlight, assertMove } from '../../../gateway/store/status.js';
import { decidePull, isPullable, normalizeTag, progressMessage } from '../../../gateway/pull/rules.js';
import { newPullRecord, type ImageRecord, type RecordKey } from '../../../gateway/store/record.js';

test('the pull path is a legal sequence of statuses, with and without an examiner', (t) => {
  const walk = (seq: string[]) => seq.slice(1).every((s, i) => canMove(seq[i] as never, s as never));
  t.true(walk(['INIT', 'PENDING', 'PULLING', 'CONVERSION', 'EXAMINATION', 'TRANSFER', 'READY']));
  t.true(walk(['PENDING', 'PULLING', 'CONVERSION', 'TRANSFER', 'READY']));
  t.true(walk(['PENDING', 'PULLING', 'TRANSFER', 'READY']), 'meta-only path');
  t.true(walk(['READY', 'EXPIRING', 'EXPIRED']));
  t.true(walk(['PENDING', 'HASHING', 'TRANSFER', 'READY']));
});

test('impossible moves are refused', (t) => {
  t.false(canMove('READY', 'PULLING'));
  t.false(canMove('FAILURE', 'READY'));
  t.false(canMove('PENDING', 'READY'));
  t.false(canMove('EXPIRED', 'READY'));
  t.false(canMove('PULLING', 'EXAMINATION'));
  t.throws(() => assertMove('READY', 'PULLING'), { message: 'illegal image status change READY → PULLING' });
});

test('every working status can fail, and be re-queued after a restart', (t) => {
  for (const s of IMAGE_STATUSES.filter(isInFlight)) {
    t.true(canMove(s, 'FAILURE'), s);
    if (s !== 'PENDING') t.true(canMove(s, 'PENDING'), s);
  }
});

const T = { pullUpdateTimeoutSec: 300, heartbeatTimeoutSec: 3600 };
const rec = (over: Partial<ImageRecord>): ImageRecord => ({
  ...newPullRecord('k' as RecordKey, {
    system: 's',
    itype: 'docker',
    pulltag: 'a:1',
    requesterUid: null,
    userACL: [],
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: 1000,
  }),
  ...over,
});

test('pullable: READY/FAILURE only after PullUpdateTimeout, in-flight only after the heartbeat timeout', (t) => {
  t.false(isPullable(rec({ status: 'READY', last_pull: 1000 }), 1299, T));
  t.true(isPullable(rec({ status: 'READY', last_pull: 1000 }), 1301, T));
  t.false(isPullable(rec({ status: 'FAILURE', last_pull: 1000 }), 1200, T));
  t.true(isPullable(rec({ status: 'FAILURE', last_pull: 1000 }), 1301, T));
  t.false(isPullable(rec({ status: 'PULLING', last_heartbeat: 1000 }), 4000, T));
  t.true(isPullable(rec({ status: 'PULLING', last_heartbeat: 1000 }), 4601, T));
  t.true(isPullable(rec({ status: 'EXPIRED' }), 1001, T));
  t.true(isPullable(rec({ status: 'READY', last_pull: null }), 1001, T));
  t.true(isPullable(rec({ status: 'READY', last_pull: 1000 }), 1001, { ...T, pullUpdateTimeoutSec: 0 }));
});

test('decidePull: start, join, return READY, and re-pull on an ACL change', (t) => {
  const base = { userACL: [] as number[], groupACL: [] as number[], now: 1100 };
  t.deepEqual(decidePull({ ...base, pending: null, ready: null }, T), { action: 'start' });
  const inflight = rec({ status: 'PULLING', last_heartbeat: 1090 });
  t.deepEqual(decidePull({ ...base, pending: inflight, ready: null }, T), { action: 'return', record: inflight });
  const ready = rec({ status: 'READY', last_pull: 1000 });
  t.deepEqual(decidePull({ ...base, pending: null, ready }, T), { action: 'return', record: ready });
  t.deepEqual(
    decidePull({ ...base, userACL: [5, 1000], pending: null, ready }, T),
    { action: 'start' },
    'ACLs changed',
  );
  t.deepEqual(
    decidePull({ ...base, now: 1005, userACL: [5], pending: null, ready }, T).action,
    'return',
    'pulled under 10 s ago',
  );
  t.deepEqual(
    decidePull({ ...base, userACL: [5], pending: inflight, ready }, T).action,
    'return',
    'a pull is in flight',
  );
  const failed = rec({ status: 'FAILURE', last_pull: 1000 });
  t.deepEqual(decidePull({ ...base, pending: failed, ready: null }, T), { action: 'return', record: failed });
  t.deepEqual(decidePull({ ...base, now: 1400, pending: failed, ready: null }, T), { action: 'start' });
});

test('progress messages and :latest rules', (t) => {
  t.is(
    progressMessage({ layersDone: 2, layersTotal: 7, bytesDone: 45_200_000, bytesTotal: 120_100_000 }),
    'Pulling layer 3/7 (45.2 MB of 120.1 MB)',
  );
  t.is(
    progressMessage({ layersDone: 7, layersTotal: 7, bytesDone: 1, bytesTotal: 1 }),
    'Pulling layer 7/7 (0.0 MB of 0.0 MB)',
  );
  t.is(normalizeTag('docker', 'ubuntu', false), 'ubuntu:latest');
  t.is(normalizeTag('docker', 'ubuntu:22.04', false), 'ubuntu:22.04');
  t.is(normalizeTag('docker', '127.0.0.1:5000/a/b', false), '127.0.0.1:5000/a/b:latest');
  t.is(normalizeTag('docker', `a@sha256:${'0'.repeat(64)}`, false), `a@sha256:${'0'.repeat(64)}`);
  t.is(normalizeTag('custom', 'mine', true), 'mine:latest');
  t.is(normalizeTag('custom', 'mine', false), 'mine');
});
