/**
 * `--version` of every installed program prints the same line, package.json's version, where
 * nothing else is set up: no shifterd, gateway, munged or udiRoot.conf.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO, LAUNCHER } from '../node-daemon/runtime-fixture.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { name: string; version: string };
// Nothing to find: no config at the default path is needed, a config named here does not exist.
const bare = { PATH: '/usr/bin:/bin', SHIFTER_UDIROOT_CONF: '/nonexistent/udiRoot.conf', GWCONFIG: '/nonexistent' };

const programs = [
  'shifterimg',
  'shifterd',
  'shifter-gateway',
  'shifterd-cache',
  'prep-gpu',
  'prep-mpi',
  'shifter-job-check',
  'shifter-job-env',
  'shifter-node-check',
];

for (const name of programs) {
  test(`${name} --version prints the version without any service or config`, async (t) => {
    const r = await run(join(REPO, 'bin', name), ['--version'], { env: bare });
    t.is(r.stdout, `${pkg.name} ${pkg.version}\n`);
    t.is(r.stderr, '');
  });
}

test('shifter --version prints the same line with no shifterd on the node', async (t) => {
  const r = await run(LAUNCHER, ['--version'], { env: { ...bare, SHIFTERD_SOCKET: '/nonexistent/shifterd.sock' } });
  t.is(r.stdout, `${pkg.name} ${pkg.version}\n`);
  t.is(r.stderr, '');
});
