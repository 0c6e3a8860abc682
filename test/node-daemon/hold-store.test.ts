/**
 * The holds file: what one shifterd writes the next one reads back whole; a damaged file is a
 * one-line error naming the file and the fix, never a half-read list.
 */
import test from 'ava';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isShifterError } from '../../common/errors.js';
import { readHolds, writeHolds, type HoldRecord } from '../../node-daemon/hold-store.js';

const record: HoldRecord = {
  holder: 'slurm-job-42',
  uid: 1001,
  gid: 1001,
  groups: [1001, 4243],
  imageId: 'ab12',
  volumes: ['/scratch/a:/data:ro'],
  modules: { kind: 'list', names: ['mpich'] },
  hostsfile: 'node1\nnode1\n',
  mountNamespaces: [4026532301],
};

test('holds written by one shifterd are read back by the next, in a 0600 file and no temporary left', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'holds-'));
  try {
    const path = join(dir, 'shifterd-holds.json');
    t.deepEqual(await readHolds(path), []);
    await writeHolds(path, [record, { ...record, holder: 'site-tool', hostsfile: '', modules: { kind: 'none' } }]);
    await writeHolds(path, [record]);
    t.deepEqual(await readHolds(path), [record]);
    t.is((await stat(path)).mode & 0o777, 0o600);
    t.deepEqual(await readdir(dir), ['shifterd-holds.json']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a damaged holds file is one error naming the file and what to do', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'holds-'));
  try {
    const path = join(dir, 'shifterd-holds.json');
    await writeFile(path, '{"version":1,"holds":[{"holder":"x"');
    const truncated = await readHolds(path);
    t.true(isShifterError(truncated));
    t.regex((truncated as Error).message, new RegExp(`^${path} is not JSON .*: remove it to start without holds$`));
    await writeFile(path, JSON.stringify({ version: 1, holds: [{ ...record, uid: -1 }] }));
    const bad = await readHolds(path);
    t.true(isShifterError(bad));
    t.is((bad as Error).message, `${path} is not a shifterd holds file (version 1): remove it`);
    t.is(await readFile(path, 'utf8'), JSON.stringify({ version: 1, holds: [{ ...record, uid: -1 }] }));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
