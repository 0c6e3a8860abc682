/**
 * bin/prep-mpi on the host's Debian MPICH (libmpich.so.12): the tree it builds, the lines it
 * prints, a second run, and refusals.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isGlibcLibrary, newestGlibc } from '../../common/elf/glibc.js';
import { parseModuleManifest } from '../../common/module-manifest.js';
import { REPO } from '../node-daemon/runtime-fixture.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'prep-mpi-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function prepMpi(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(REPO, 'bin', 'prep-mpi'), args);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

function readelf(args: string[], file: string): Promise<string> {
  return run('readelf', ['-W', ...args, file]).then((r) => r.stdout);
}

test.serial('the mpich module: MPI libraries, their closure, RUNPATHs, manifest, printed lines', async (t) => {
  const dest = join(dir, 'modules', 'mpich');
  const r = await prepMpi([dest]);
  t.is(r.code, 0, r.stderr);
  t.is(
    r.stdout,
    `module_mpich_copyPath=${dest}\n` +
      'module_mpich_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64:/opt/udiImage/modules/mpich/lib64/dep\n',
  );
  t.regex(r.stderr, /libmpich\.so\.12 \(MPICH ABI 12\), x86_64, glibc >= 2\.\d+/);

  t.true(lstatSync(join(dest, 'lib64', 'libmpich.so.12')).isSymbolicLink());
  for (const dep of ['libhwloc.so.15', 'libucp.so.0', 'libucs.so.0'])
    t.true(existsSync(join(dest, 'lib64/dep', dep)), dep);
  t.true(
    readdirSync(join(dest, 'lib64/dep/ucx')).some((f) => f.startsWith('libuct_')),
    'UCX transports go along',
  );

  const manifest = parseModuleManifest(readFileSync(join(dest, 'manifest.json'), 'utf8'), 'manifest.json');
  t.like(manifest, { kind: 'mpi', name: 'mpich', architecture: 'x86_64' });
  t.like(manifest.mpi, { family: 'mpich', soname: 'libmpich.so.12', abiVersion: '12' });
  const version = (await run('pkg-config', ['--modversion', 'mpich'])).stdout.trim();
  t.is(manifest.mpi!.libraryVersion, version);

  const files = manifest.files.flatMap((f) => (f.type === 'file' ? [f] : []));
  t.true(files.length > 5);
  const needs: string[] = [];
  for (const f of files) {
    const path = join(dest, f.path);
    t.false(isGlibcLibrary(f.path.split('/').pop()!), `${f.path} is glibc's and must not be copied`);
    t.is(createHash('sha256').update(readFileSync(path)).digest('hex'), f.sha256, f.path);
    t.regex(
      await readelf(['-d'], path),
      /\(RUNPATH\)\s+Library runpath: \[\/opt\/udiImage\/modules\/mpich\/lib64\/dep\]/,
    );
    needs.push(...[...(await readelf(['-V'], path)).matchAll(/Name: (GLIBC_[\d.]+)/g)].map((m) => m[1]));
  }
  t.is(manifest.glibcNeeded, newestGlibc(needs), 'the newest GLIBC_ version any copied file needs (readelf)');
  for (const f of manifest.files) if (f.type === 'symlink') t.true(existsSync(join(dest, f.path)), f.path);
});

test.serial('running it again replaces the tree and leaves nothing behind', async (t) => {
  const parent = join(dir, 'modules');
  const dest = join(parent, 'mpich');
  const before = readFileSync(join(dest, 'manifest.json'), 'utf8');
  const r = await prepMpi([dest, '--from', '/usr/lib/x86_64-linux-gnu']);
  t.is(r.code, 0, r.stderr);
  const after = parseModuleManifest(readFileSync(join(dest, 'manifest.json'), 'utf8'), 'manifest.json');
  t.not(readFileSync(join(dest, 'manifest.json'), 'utf8'), before);
  t.is(after.mpi!.libraryVersion, undefined, 'a directory says no release');
  t.deepEqual(readdirSync(parent), ['mpich']);
});

test('refusals: a directory that is not a module, an unknown --from, no MPI there, a bad name', async (t) => {
  const notModule = join(dir, 'data');
  mkdirSync(notModule);
  writeFileSync(join(notModule, 'precious'), 'keep me\n');
  const a = await prepMpi([notModule]);
  t.is(a.code, 2);
  t.is(
    a.stderr,
    `prep-mpi: ${notModule} exists and is not a module tree (no manifest.json): give a new or empty directory\n`,
  );
  t.is(readFileSync(join(notModule, 'precious'), 'utf8'), 'keep me\n');

  const b = await prepMpi([join(dir, 'x'), '--from', 'no-such-mpi']);
  t.is(b.code, 2);
  t.regex(b.stderr, /^prep-mpi: --from no-such-mpi: no such directory and pkg-config knows no package/);

  const empty = join(dir, 'empty-lib');
  mkdirSync(empty);
  const c = await prepMpi([join(dir, 'y'), '--from', empty]);
  t.is(c.code, 1);
  t.is(
    c.stderr,
    `prep-mpi: ${empty} has no libmpi.so.N or libmpich.so.N: point --from at the MPI's library directory\n`,
  );

  const d = await prepMpi([join(dir, 'z'), '--name', 'my_mpi']);
  t.is(d.code, 2);
  t.false(existsSync(join(dir, 'y')) || existsSync(join(dir, 'z')));
});
