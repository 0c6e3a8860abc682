/**
 * mungeEncode when the munge tool itself hangs (stuck on a dead file system, say): it gives up
 * in time with a message naming the socket, not an empty reason. A stand-in `munge` that never
 * exits comes first on PATH; this file holds only this test because PATH is process-wide.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type MungeError, mungeEncode } from '../../common/munge.js';

test('a munge that never finishes: the credential fails in time, naming the socket', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hung-munge-'));
  const savedPath = process.env.PATH;
  try {
    await writeFile(join(dir, 'munge'), '#!/bin/sh\nexec sleep 600\n', { mode: 0o755 });
    process.env.PATH = `${dir}:${savedPath ?? '/usr/bin:/bin'}`;
    const started = Date.now();
    const e = await t.throwsAsync(mungeEncode('', { socket: '/run/test/munge.sock', timeoutMs: 500 }));
    t.is(e?.message, 'munge did not finish within 0.5 s; is munged running on /run/test/munge.sock?');
    t.is((e as MungeError).failure, 'unavailable');
    t.true(Date.now() - started < 15_000);
  } finally {
    process.env.PATH = savedPath;
    await rm(dir, { recursive: true, force: true });
  }
});
