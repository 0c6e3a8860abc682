/**
 * The ELF reader against the system's own libraries (cross-checked with binutils' readelf), small
 * libraries built here with gcc (RPATH vs RUNPATH, $ORIGIN, version scripts), and broken input.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf } from '../../common/elf/elf-file.js';
import { glibcNeeded, glibcProvided, isGlibcLibrary } from '../../common/elf/glibc.js';
import {
  libraryClosure,
  parseLdconfigOutput,
  readElfFile,
  readLdCache,
  searchOrder,
} from '../../common/elf/library-resolver.js';

const dir = mkdtempSync(join(tmpdir(), 'elf-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const LIBC = realpathSync(execFileSync('gcc', ['-print-file-name=libc.so.6'], { encoding: 'utf8' }).trim());
const MPICH = '/usr/lib/x86_64-linux-gnu/libmpich.so.12';
const ARCH = { x64: 'x86_64', arm64: 'aarch64' }[process.arch as string] ?? process.arch;

function readelf(args: string[], file: string): string {
  return execFileSync('readelf', ['-W', ...args, file], { encoding: 'utf8' });
}

function gccShared(out: string, source: string, flags: string[]): string {
  const src = `${out}.c`;
  writeFileSync(src, source);
  execFileSync('gcc', ['-shared', '-fPIC', '-o', out, src, ...flags]);
  return out;
}

test("libc.so.6: its soname, machine and the glibc version it provides (getconf's)", async (t) => {
  const libc = await readElfFile(LIBC);
  t.is(libc.soname, 'libc.so.6');
  t.is(libc.machine, ARCH);
  t.is(libc.elfClass, 64);
  const running = execFileSync('getconf', ['GNU_LIBC_VERSION'], { encoding: 'utf8' }).trim().split(' ')[1];
  t.is(glibcProvided(libc), running);
  t.true(libc.versionDefinitions.includes('GLIBC_2.34'));
  t.false(libc.versionDefinitions.includes('libc.so.6'), 'the base entry names the file, not a version');
});

test('libmpich.so.12: DT_NEEDED and the versions it needs, as readelf reads them', async (t) => {
  const elf = await readElfFile(MPICH);
  const needed = [...readelf(['-d'], MPICH).matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map((m) => m[1]);
  t.deepEqual(elf.needed, needed);
  const versions = readelf(['-V'], MPICH);
  const needSection = versions.slice(versions.indexOf('.gnu.version_r'));
  for (const n of elf.versionNeeds) {
    t.true(needSection.includes(`File: ${n.file}`), n.file);
    for (const v of n.versions) t.true(needSection.includes(`Name: ${v} `), v);
  }
  const glibcFromReadelf = [...needSection.matchAll(/Name: GLIBC_(\d+\.\d+)/g)]
    .map((m) => m[1])
    .sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1]))
    .pop();
  t.is(glibcNeeded(elf), glibcFromReadelf);
});

test('RPATH vs RUNPATH, soname and version definitions of a library built here', async (t) => {
  const script = join(dir, 'v.map');
  writeFileSync(script, 'OLD_1.0 { global: old_fn; local: *; };\nNEW_2.0 { global: new_fn; } OLD_1.0;\n');
  const runpath = gccShared(join(dir, 'librp.so.1'), 'int old_fn(void){return 1;}\nint new_fn(void){return 2;}\n', [
    '-Wl,-soname,librp.so.1',
    `-Wl,--version-script=${script}`,
    '-Wl,-rpath,$ORIGIN/dep:/opt/x',
    '-Wl,--enable-new-dtags',
  ]);
  const rpath = gccShared(join(dir, 'librpath.so'), 'int f(void){return 0;}\n', [
    '-Wl,-rpath,/somewhere',
    '-Wl,--disable-new-dtags',
  ]);
  const a = await readElfFile(runpath);
  t.is(a.soname, 'librp.so.1');
  t.deepEqual(a.runpath, ['$ORIGIN/dep', '/opt/x']);
  t.deepEqual(a.rpath, []);
  t.deepEqual(a.versionDefinitions, ['OLD_1.0', 'NEW_2.0']);
  const b = await readElfFile(rpath);
  t.deepEqual(b.rpath, ['/somewhere']);
  t.deepEqual(b.runpath, []);
  t.is(b.soname, undefined);
});

test('a truncated library and a file that is not ELF: one clear error each', (t) => {
  const whole = readFileSync(LIBC);
  for (const size of [10, 64, 200, 4096]) {
    const e = t.throws(() => parseElf(whole.subarray(0, size), 'cut-libc.so.6'));
    t.regex(e.message, /^cut-libc\.so\.6: (damaged or truncated ELF file|not an ELF file)/, `${size} bytes`);
  }
  const e = t.throws(() => parseElf(Buffer.from('#!/bin/sh\necho hi\n'), 'script.sh'));
  t.is(e.message, 'script.sh: not an ELF file (no \\x7fELF magic at its start)');
  const bad = Buffer.from(whole.subarray(0, 64));
  bad[4] = 9;
  t.is(t.throws(() => parseElf(bad, 'x')).message, 'x: unknown ELF class 9');
});

test('ldconfig -p lines are parsed with their flags', (t) => {
  const entries = parseLdconfigOutput(
    "2 libs found in cache `/etc/ld.so.cache'\n" +
      '\tlibmpich.so.12 (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpich.so.12\n' +
      '\tlibfoo.so.1 (libc6, OS ABI: Linux 3.2.0) => /usr/lib/i386-linux-gnu/libfoo.so.1\n',
  );
  t.deepEqual(entries, [
    { name: 'libmpich.so.12', flags: 'libc6,x86-64', path: '/lib/x86_64-linux-gnu/libmpich.so.12' },
    { name: 'libfoo.so.1', flags: 'libc6, OS ABI: Linux 3.2.0', path: '/usr/lib/i386-linux-gnu/libfoo.so.1' },
  ]);
});

test('the closure follows $ORIGIN RUNPATHs, skips glibc, and names what is missing and who needs it', async (t) => {
  const root = join(dir, 'closure');
  mkdirSync(join(root, 'dep'), { recursive: true });
  gccShared(join(root, 'dep', 'libleaf.so.3'), '#include <math.h>\ndouble leaf(double x){return sqrt(x);}\n', [
    '-Wl,-soname,libleaf.so.3',
    '-lm',
  ]);
  const top = gccShared(join(root, 'libtop.so.1'), 'double leaf(double);\ndouble top(void){return leaf(4);}\n', [
    '-Wl,-soname,libtop.so.1',
    `-L${join(root, 'dep')}`,
    '-l:libleaf.so.3',
    '-Wl,-rpath,$ORIGIN/dep',
  ]);
  const cache = await readLdCache();
  const closure = await libraryClosure([{ path: top, elf: await readElfFile(top) }], { extraDirs: [], cache });
  t.deepEqual([...closure.libraries.keys()], ['libleaf.so.3']);
  t.is(closure.libraries.get('libleaf.so.3')!.path, join(root, 'dep', 'libleaf.so.3'));
  t.true((await readElfFile(join(root, 'dep', 'libleaf.so.3'))).needed.some(isGlibcLibrary));

  const orphan = gccShared(join(root, 'liborphan.so'), 'double leaf(double);\ndouble o(void){return leaf(1);}\n', [
    `-L${join(root, 'dep')}`,
    '-l:libleaf.so.3',
  ]);
  const e = await t.throwsAsync(
    libraryClosure([{ path: orphan, elf: await readElfFile(orphan) }], { extraDirs: [], cache }),
  );
  t.regex(e.message, /^libleaf\.so\.3, needed by .*liborphan\.so, is not found where the dynamic loader looks/);
});

test('search order: RPATH (own, then loaders) only without RUNPATH, then RUNPATH, cache, defaults', (t) => {
  const elf = (rpath: string[], runpath: string[]) => ({
    ...parseElf(readFileSync(LIBC), 'libc'),
    rpath,
    runpath,
  });
  const cache = [{ name: 'libz.so.1', flags: 'libc6,x86-64', path: '/cache/libz.so.1' }];
  const exe = { path: '/app/bin/exe', elf: elf(['$ORIGIN/../lib'], []) };
  const withRpath = { path: '/x/liba.so', elf: elf(['/r'], []) };
  const withRunpath = { path: '/x/libb.so', elf: elf(['/r'], ['${ORIGIN}/run']) };
  const order = searchOrder(withRpath, [exe], { extraDirs: [], cache }, 'libz.so.1');
  t.deepEqual(order.slice(0, 3), ['/r/libz.so.1', '/app/lib/libz.so.1', '/cache/libz.so.1']);
  const run = searchOrder(withRunpath, [exe], { extraDirs: ['/first'], cache }, 'libz.so.1');
  t.deepEqual(run.slice(0, 3), ['/first/libz.so.1', '/x/run/libz.so.1', '/cache/libz.so.1']);
  t.true(run.includes('/usr/lib64/libz.so.1'));
});
