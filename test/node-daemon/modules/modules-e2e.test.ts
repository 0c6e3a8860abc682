/**
 * Modules end to end, as a user sees them: the real shifterd and launcher, modules built by
 * bin/prep-mpi (Debian MPICH) and bin/prep-gpu (a fake driver), enabled with the very lines the
 * tools print, and images carrying their own MPICH, a CUDA-style program, an old glibc, or Open
 * MPI. `mpiexec -n 2` (hydra) starts `shifter` per rank. The GPU module's `_devices` line names
 * character devices made with mknod (an unused major) in a directory shifterd takes for the host's
 * /dev (SHIFTERD_TEST_DEVICE_ROOT, honoured only for a root-owned directory nobody else can write).
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  linkSync,
  mkdirSync,
  readdirSync,
  realpathSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { TEST_VERSION_FILE_ENV } from '../../../node-daemon/modules/driver-version.js';
import { buildFakeDriver, fakeCudaVersion } from '../../tools/fake-nvidia.js';
import { LAUNCHER, REPO, ShifterdFixture, TEST_USER, ensureTestUser, type RunResult } from '../runtime-fixture.js';

const LIB = 'usr/lib/x86_64-linux-gnu';
const DRIVER = '550.54.14';

const HELLO_C = `#include <mpi.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
	int rank, size, sum;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	printf("rank %d of %d: allreduce %d\\n", rank, size, sum);
	if (argc > 1 && rank == 0) {
		char line[4096];
		FILE *maps = fopen("/proc/self/maps", "r");
		while (maps && fgets(line, sizeof line, maps))
			if (strstr(line, "libmpich.so")) {
				printf("maps: %s", strchr(line, '/'));
				break;
			}
	}
	MPI_Finalize();
	return 0;
}
`;

const CUDA_C = `#include <stdio.h>
int cuInit(unsigned int);
int cuDriverGetVersion(int *);
int main(void)
{
	int v = 0;
	if (cuInit(0) != 0 || cuDriverGetVersion(&v) != 0)
		return 1;
	printf("cuDriverGetVersion: %d\\n", v);
	return 0;
}
`;

ensureTestUser();
const fx = new ShifterdFixture();
const build = join(fx.dir, 'build');
const images: Record<'mpi' | 'cuda' | 'oldGlibc' | 'openmpi', string> = {
  mpi: '',
  cuda: '',
  oldGlibc: '',
  openmpi: '',
};
let mpiModule = '';
let gpuModule = '';
const versionFile = join(fx.dir, 'nvidia-version');
/** Not a real driver's major: the fake /dev/nvidia* nodes must never reach a real device. */
const FAKE_GPU_MAJOR = 242;

/** A rootfs with busybox, the loader and, under /usr/lib/x86_64-linux-gnu, the libraries `programs` load (ldd). */
function rootfs(name: string, programs: Record<string, string>, skip: readonly string[] = [], env = {}): string {
  const root = join(build, name);
  for (const d of ['bin', 'app', 'etc', 'tmp', 'lib64', `${LIB}/ucx`]) mkdirSync(join(root, d), { recursive: true });
  symlinkSync('usr/lib', join(root, 'lib'));
  copyFileSync('/bin/busybox', join(root, 'bin/busybox'));
  for (const a of ['sh', 'cat', 'echo', 'grep']) symlinkSync('busybox', join(root, 'bin', a));
  copyFileSync(realpathSync('/lib64/ld-linux-x86-64.so.2'), join(root, 'lib64/ld-linux-x86-64.so.2'));
  for (const [dest, program] of Object.entries(programs)) {
    copyFileSync(program, join(root, 'app', dest));
    chmodSync(join(root, 'app', dest), 0o755);
    const ldd = execFileSync('ldd', [program], { encoding: 'utf8', env: { ...process.env, ...env } });
    for (const m of ldd.matchAll(/^\s*(\S+) => (\/\S+)/gm)) {
      if (!skip.includes(m[1])) copyFileSync(realpathSync(m[2]), join(root, LIB, m[1]));
    }
  }
  return root;
}

/** Publishes `root` as a squashfs image in the fixture's imagePath; returns its `id:` name. */
function publish(root: string): string {
  const squashfs = join(build, `${basename(root)}.squashfs`);
  execFileSync('mksquashfs', [root, squashfs, '-all-root', '-no-xattrs', '-quiet', '-noappend'], { stdio: 'ignore' });
  const id = createHash('sha256')
    .update(`modules-e2e-${basename(root)}-${process.pid}-${Math.random()}`)
    .digest('hex');
  linkSync(squashfs, join(fx.imagePath, `${id}.squashfs`));
  writeFileSync(join(fx.imagePath, `${id}.meta`), 'FORMAT: squashfs\nENV: PATH=/app:/bin\n', { mode: 0o600 });
  return `id:${id}`;
}

function gcc(args: string[]): void {
  execFileSync('gcc', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

function tool(name: string, args: string[]): string {
  return execFileSync(join(REPO, 'bin', name), args, { encoding: 'utf8' });
}

test.before(async () => {
  mkdirSync(build, { recursive: true });
  // An image with its own MPICH (the host's Debian one, with UCX's transports), as a user would build it.
  writeFileSync(join(build, 'hello.c'), HELLO_C);
  execFileSync('mpicc.mpich', ['-O2', '-o', join(build, 'mpi-hello'), join(build, 'hello.c')]);
  const mpiRoot = rootfs('mpi', { 'mpi-hello': join(build, 'mpi-hello') });
  for (const f of readdirSync(`/${LIB}/ucx`).filter((n) => /\.so\.\d+$/.test(n))) {
    copyFileSync(realpathSync(`/${LIB}/ucx/${f}`), join(mpiRoot, LIB, 'ucx', f));
  }
  images.mpi = publish(mpiRoot);

  // A CUDA-style program linked against libcuda.so.1, which the image does not carry: the module brings it.
  const driver = buildFakeDriver(join(build, 'driver'), DRIVER);
  writeFileSync(join(build, 'cuda.c'), CUDA_C);
  gcc(['-O2', '-o', join(build, 'cuda-version'), join(build, 'cuda.c'), `-L${driver.libDir}`, '-l:libcuda.so.1']);
  images.cuda = publish(
    rootfs('cuda', { 'cuda-version': join(build, 'cuda-version') }, ['libcuda.so.1'], {
      LD_LIBRARY_PATH: driver.libDir,
    }),
  );

  // An image whose libc.so.6 defines versions up to GLIBC_2.17 only (a stub built with a version script).
  const old = rootfs('old-glibc', {});
  writeFileSync(join(build, 'old.map'), 'GLIBC_2.2.5 { global: old_fn; local: *; };\nGLIBC_2.17 { } GLIBC_2.2.5;\n');
  writeFileSync(join(build, 'old.c'), 'int old_fn(void) { return 0; }\n');
  gcc(
    ['-shared', '-nostdlib', '-fPIC', '-Wl,-soname,libc.so.6', `-Wl,--version-script=${join(build, 'old.map')}`].concat(
      ['-o', join(old, LIB, 'libc.so.6'), join(build, 'old.c')],
    ),
  );
  images.oldGlibc = publish(old);

  // An image with Open MPI's soname next to the host's real glibc.
  const ompi = rootfs('openmpi', {});
  copyFileSync(realpathSync(`/${LIB}/libc.so.6`), join(ompi, LIB, 'libc.so.6'));
  gcc(['-shared', '-fPIC', '-Wl,-soname,libmpi.so.40', '-o', join(ompi, LIB, 'libmpi.so.40'), join(build, 'old.c')]);
  images.openmpi = publish(ompi);

  mpiModule = join(fx.dir, 'modules', 'mpich');
  const mpiLines = tool('prep-mpi', [mpiModule]).trim().split('\n');
  gpuModule = join(fx.dir, 'modules', 'gpu');
  const gpuLines = tool('prep-gpu', [gpuModule, '--from', driver.libDir, '--tools-from', driver.binDir])
    .trim()
    .split('\n');
  const devRoot = join(fx.dir, 'host-dev');
  mkdirSync(devRoot, { mode: 0o755 });
  const gpuNodes: Array<[string, number]> = [
    ['nvidia0', 0],
    ['nvidia1', 1],
    ['nvidiactl', 255],
    ['nvidia-uvm', 254],
    ['nvidia-uvm-tools', 253],
    ['nvidia-modeset', 252],
  ];
  for (const [name, minor] of gpuNodes) {
    execFileSync('mknod', ['-m', '0666', join(devRoot, name), 'c', String(FAKE_GPU_MAJOR), String(minor)]);
  }
  process.env.SHIFTERD_TEST_DEVICE_ROOT = devRoot;
  chmodSync(join(fx.dir, 'modules'), 0o755);
  writeFileSync(versionFile, `${DRIVER}\n`, { mode: 0o644 });
  process.env[TEST_VERSION_FILE_ENV] = versionFile;
  fx.writeConfig([...mpiLines, ...gpuLines]);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
});

/** `mpiexec -n 2 shifter ARGS` as the test user: hydra on the host, one launcher per rank. */
function mpiexec(args: string[]): Promise<RunResult> {
  const { gid } = ensureTestUser();
  const child = spawn(
    'setpriv',
    [`--reuid=${TEST_USER}`, `--regid=${gid}`, `--groups=${gid}`, '--', 'mpiexec.hydra', '-n', '2', LAUNCHER, ...args],
    {
      cwd: '/',
      env: { PATH: '/usr/bin:/bin', HOME: '/tmp', SHIFTERD_SOCKET: fx.socket },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

function ranks(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('rank '))
    .sort();
}

test.serial(
  'mpiexec -n 2 with the mpich module: both ranks, a correct allreduce, libmpich from the module',
  async (t) => {
    const r = await mpiexec([`--image=${images.mpi}`, '--module=mpich', '/app/mpi-hello', 'maps']);
    t.is(r.code, 0, r.stderr + r.stdout);
    t.deepEqual(ranks(r.stdout), ['rank 0 of 2: allreduce 1', 'rank 1 of 2: allreduce 1']);
    t.regex(r.stdout, /^maps: \/opt\/udiImage\/modules\/mpich\/lib64\/libmpich\.so\.12[.\d]*$/m);
  },
);

test.serial("with --module=none the image's own libmpich is the one loaded", async (t) => {
  const r = await mpiexec([`--image=${images.mpi}`, '--module=none', '/app/mpi-hello', 'maps']);
  t.is(r.code, 0, r.stderr + r.stdout);
  t.deepEqual(ranks(r.stdout), ['rank 0 of 2: allreduce 1', 'rank 1 of 2: allreduce 1']);
  t.regex(r.stdout, /^maps: \/usr\/lib\/x86_64-linux-gnu\/libmpich\.so\.12$/m);
});

test.serial('--check prints the verdict and runs nothing', async (t) => {
  const ok = await fx.run([`--image=${images.mpi}`, '--module=mpich', '--check', '/app/mpi-hello']);
  t.is(ok.code, 0, ok.stderr);
  t.regex(
    ok.stdout,
    new RegExp(
      `^shifter: module mpich fits image ${images.mpi}: x86_64, glibc [\\d.]+ >= [\\d.]+, ` +
        "image MPI libmpich\\.so\\.12 has the mpich module's ABI\\n$",
    ),
  );
  const bad = await fx.run([`--image=${images.oldGlibc}`, '--module=mpich', '--check']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /^shifter: module mpich does not fit image id:[0-9a-f]+: image glibc 2\.17 < 2\.\d+ needed/);
});

test.serial('an image with an old glibc is refused before anything runs, with what to do', async (t) => {
  const r = await fx.run([`--image=${images.oldGlibc}`, '--module=mpich', 'echo', 'never']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(
    r.stderr,
    /^shifter: image glibc 2\.17 < 2\.\d+ needed by the mpich module: rebuild the image on a newer base or run with --module=none\n$/,
  );
  const none = await fx.run([`--image=${images.oldGlibc}`, '--module=none', 'echo', 'runs']);
  t.is(none.code, 0, none.stderr);
  t.is(none.stdout, 'runs\n');
});

test.serial('an image with Open MPI (libmpi.so.40) is refused for the MPICH-ABI module', async (t) => {
  const r = await fx.run([`--image=${images.openmpi}`, '--module=mpich', 'echo', 'never']);
  t.is(r.code, 1);
  t.is(
    r.stderr,
    'shifter: image MPI libmpi.so.40 (Open MPI ABI) at /lib/x86_64-linux-gnu/libmpi.so.40 does not match the ' +
      "mpich module's libmpich.so.12 (MPICH ABI 12): rebuild the image against an MPI with the same ABI or run with " +
      '--module=none\n',
  );
});

test.serial('gpu: the program calls the injected cuDriverGetVersion; nvidia-smi is on PATH', async (t) => {
  const r = await fx.run([`--image=${images.cuda}`, '--module=gpu', '/app/cuda-version']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `cuDriverGetVersion: ${fakeCudaVersion(DRIVER)}\n`);
  const smi = await fx.run([`--image=${images.cuda}`, '--module=gpu', 'nvidia-smi']);
  t.is(smi.code, 0, smi.stderr);
  t.is(smi.stdout, `NVIDIA-SMI fake, driver ${DRIVER} (helper)\n`);
  const without = await fx.run([`--image=${images.cuda}`, '--module=none', '/app/cuda-version']);
  t.not(without.code, 0, 'without the module the image has no libcuda');
});

test.serial(
  'gpu: the printed _devices line gives the container the control nodes and only the visible GPU',
  async (t) => {
    const r = await fx.run([`--image=${images.cuda}`, '--module=gpu', 'sh', '-c', 'echo /dev/nvidia*'], {
      env: { CUDA_VISIBLE_DEVICES: '1' },
    });
    t.is(r.code, 0, r.stderr);
    t.deepEqual(
      r.stdout.trim().split(' ').sort(),
      ['/dev/nvidia-modeset', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools', '/dev/nvidia1', '/dev/nvidiactl'].sort(),
    );
  },
);

test.serial('gpu: a node running another driver version refuses the module', async (t) => {
  writeFileSync(versionFile, '535.104.05\n');
  try {
    const r = await fx.run([`--image=${images.cuda}`, '--module=gpu', '/app/cuda-version']);
    t.is(r.code, 1);
    t.is(
      r.stderr,
      `shifter: this node runs NVIDIA driver 535.104.05, the gpu module holds the libraries of driver ${DRIVER}: ` +
        'ask the admins to rebuild it with prep-gpu on this driver or run with --module=none\n',
    );
  } finally {
    writeFileSync(versionFile, `${DRIVER}\n`);
  }
});
