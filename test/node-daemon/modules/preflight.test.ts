/**
 * The pre-flight verdict (pure), the image facts reader on a directory tree standing in for an
 * image root (symlinks that point at absolute paths must stay inside it), and the driver version.
 */
import test from 'ava';
import { copyFileSync, mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import type { ModuleManifest } from '../../../common/module-manifest.js';
import { parseProcDriverVersion, runningDriverVersion } from '../../../node-daemon/modules/driver-version.js';
import { readImageFacts, resolveInImage } from '../../../node-daemon/modules/image-facts.js';
import { checkModule, type ImageFacts } from '../../../node-daemon/modules/preflight.js';

const dir = mkdtempSync(join(tmpdir(), 'preflight-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const mpich: Pick<ModuleManifest, 'name' | 'kind' | 'architecture' | 'glibcNeeded' | 'mpi' | 'gpu'> = {
  name: 'mpich',
  kind: 'mpi',
  architecture: 'x86_64',
  glibcNeeded: '2.34',
  mpi: { family: 'mpich', soname: 'libmpich.so.12', abiVersion: '12', libraryVersion: '4.0.2' },
};
const gpu = { ...mpich, name: 'gpu', kind: 'gpu' as const, mpi: undefined, gpu: { driverVersion: '550.54.14' } };
const image = (over: Partial<ImageFacts> = {}): ImageFacts => ({
  libc: { path: '/lib/x86_64-linux-gnu/libc.so.6', version: '2.36', architecture: 'x86_64' },
  mpi: [],
  unreadable: [],
  ...over,
});
const none = { kind: 'none' } as const;

test('an image that fits: the summary says why', (t) => {
  const v = checkModule(mpich, image({ mpi: [{ soname: 'libmpich.so.12', path: '/usr/lib/libmpich.so.12' }] }), none);
  t.deepEqual(v, {
    fits: true,
    summary: "x86_64, glibc 2.36 >= 2.34, image MPI libmpich.so.12 has the mpich module's ABI",
  });
});

test("the issue's example: an old glibc is refused with what to do", (t) => {
  const v = checkModule(
    mpich,
    image({ libc: { path: '/lib64/libc.so.6', version: '2.17', architecture: 'x86_64' } }),
    none,
  );
  t.deepEqual(v, {
    fits: false,
    problems: [
      'image glibc 2.17 < 2.34 needed by the mpich module: rebuild the image on a newer base or run with --module=none',
    ],
  });
  t.true(checkModule(mpich, image({ libc: { path: 'x', version: '2.34', architecture: 'x86_64' } }), none).fits);
});

test('another MPI ABI, another architecture, no glibc at all', (t) => {
  const ompi = checkModule(mpich, image({ mpi: [{ soname: 'libmpi.so.40', path: '/usr/lib/libmpi.so.40' }] }), none);
  t.deepEqual(ompi, {
    fits: false,
    problems: [
      "image MPI libmpi.so.40 (Open MPI ABI) at /usr/lib/libmpi.so.40 does not match the mpich module's " +
        'libmpich.so.12 (MPICH ABI 12): rebuild the image against an MPI with the same ABI or run with --module=none',
    ],
  });
  const intel = checkModule(mpich, image({ mpi: [{ soname: 'libmpi.so.12', path: '/opt/intel/libmpi.so.12' }] }), none);
  t.true(intel.fits, 'Intel MPI and Cray MPICH share the MPICH ABI');
  const arm = checkModule(mpich, image({ libc: { path: 'x', version: '2.36', architecture: 'aarch64' } }), none);
  t.deepEqual(arm, {
    fits: false,
    problems: ['image is aarch64, the mpich module is x86_64: use a x86_64 image or run with --module=none'],
  });
  const musl = checkModule(mpich, image({ libc: undefined }), none);
  t.regex((musl as { problems: string[] }).problems[0], /^image has no glibc \(no libc\.so\.6 in its library dir/);
});

test('gpu: the running driver must be the one the module was built from', (t) => {
  t.deepEqual(checkModule(gpu, image(), { kind: 'loaded', version: '550.54.14', source: 'x' }), {
    fits: true,
    summary: 'x86_64, glibc 2.36 >= 2.34, driver 550.54.14',
  });
  t.deepEqual(checkModule(gpu, image(), { kind: 'loaded', version: '535.104.05', source: 'x' }), {
    fits: false,
    problems: [
      'this node runs NVIDIA driver 535.104.05, the gpu module holds the libraries of driver 550.54.14: ' +
        'ask the admins to rebuild it with prep-gpu on this driver or run with --module=none',
    ],
  });
  t.regex((checkModule(gpu, image(), none) as { problems: string[] }).problems[0], /^no NVIDIA driver is loaded/);
});

test('image facts: libc and MPI found in the image only, absolute symlinks resolved inside it', async (t) => {
  const root = join(dir, 'root');
  const libdir = join(root, 'usr/lib/x86_64-linux-gnu');
  mkdirSync(libdir, { recursive: true });
  mkdirSync(join(root, 'etc/ld.so.conf.d'), { recursive: true });
  mkdirSync(join(root, 'opt/mpi/lib'), { recursive: true });
  symlinkSync('usr/lib', join(root, 'lib'));
  const libc = realpathSync(execFileSync('gcc', ['-print-file-name=libc.so.6'], { encoding: 'utf8' }).trim());
  copyFileSync(libc, join(libdir, 'libc.so.6.real'));
  // An absolute link: on the host it would name the host's file; inside the image, the image's.
  symlinkSync('/lib/x86_64-linux-gnu/libc.so.6.real', join(libdir, 'libc.so.6'));
  writeFileSync(join(root, 'etc/ld.so.conf'), 'include /etc/ld.so.conf.d/*.conf\n');
  writeFileSync(join(root, 'etc/ld.so.conf.d/mpi.conf'), '# the MPI\n/opt/mpi/lib\n');
  writeFileSync(join(root, 'opt/mpi/lib/libmpi.so.40'), 'not even ELF');
  symlinkSync('/etc/shadow', join(root, 'escape'));

  t.is(await resolveInImage(root, '/escape'), undefined, 'the host /etc/shadow is not the image');
  t.is(
    await resolveInImage(root, '/lib/x86_64-linux-gnu/libc.so.6'),
    `${root}/usr/lib/x86_64-linux-gnu/libc.so.6.real`,
  );
  const facts = await readImageFacts(root);
  const running = execFileSync('getconf', ['GNU_LIBC_VERSION'], { encoding: 'utf8' }).trim().split(' ')[1];
  t.deepEqual(facts, {
    libc: { path: '/lib/x86_64-linux-gnu/libc.so.6', version: running, architecture: 'x86_64' },
    mpi: [{ soname: 'libmpi.so.40', path: '/opt/mpi/lib/libmpi.so.40' }],
    unreadable: [],
  });

  // A FIFO where a config file should be must not block the daemon.
  rmSync(join(root, 'etc/ld.so.conf.d/mpi.conf'));
  execFileSync('mkfifo', [join(root, 'etc/ld.so.conf.d/mpi.conf')]);
  t.deepEqual((await readImageFacts(root)).mpi, [], 'the MPI directory was named only by the file now a FIFO');

  writeFileSync(join(libdir, 'libc.so.6.real'), Buffer.alloc(100));
  const broken = await readImageFacts(root);
  t.is(broken.libc, undefined);
  t.deepEqual(broken.unreadable, [
    'image /lib/x86_64-linux-gnu/libc.so.6 cannot be read as a library ' +
      '(image /lib/x86_64-linux-gnu/libc.so.6: not an ELF file (no \\x7fELF magic at its start))',
  ]);
});

test('driver version: /proc text, and the test override only from a root-owned file nobody else writes', async (t) => {
  t.is(
    parseProcDriverVersion('NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n'),
    '550.54.14',
  );
  const file = join(dir, 'nvidia-version');
  writeFileSync(file, '550.54.14\n', { mode: 0o644 });
  const env = { SHIFTERD_TEST_NVIDIA_VERSION_FILE: file };
  if (process.getuid?.() === 0) {
    t.deepEqual(await runningDriverVersion(env), { kind: 'loaded', version: '550.54.14', source: file });
    await chmod(file, 0o666);
  }
  t.deepEqual(await runningDriverVersion(env), { kind: 'none' }, 'a file others may write is not trusted');
});
