/**
 * MPI through Slurm and shifter: an MPI program built with Debian's MPICH, shipped in an image
 * with its own MPICH libraries (copied in, as a site's MPI image would carry them), started by
 * `srun --mpi=pmi2` inside an sbatch job that asked for the image. Every rank reports its rank
 * and the allreduce of all ranks: PMI's inherited descriptors and environment pass through
 * `shifter` unchanged.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, tarLayer, type TarEntry } from '../helpers/registry.js';
import { LAUNCHER } from '../node-daemon/runtime-fixture.js';
import { SlurmStack } from './stack-fixture.js';

const stack = new SlurmStack();
const LIB = '/usr/lib/x86_64-linux-gnu';

const HELLO_C = `#include <mpi.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	int rank, size, sum;
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &size);
	MPI_Allreduce(&rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	printf("rank %d of %d: allreduce %d\\n", rank, size, sum);
	MPI_Finalize();
	return 0;
}
`;

/** The program, the libraries ldd names and UCX's transport modules, at their host paths (merged /usr). */
function mpiImageEntries(hello: string): TarEntry[] {
  const entries: TarEntry[] = [
    { name: 'app', type: 'directory' },
    { name: 'app/mpi-hello', content: readFileSync(hello), mode: 0o755 },
    { name: 'usr/lib/x86_64-linux-gnu/ucx', type: 'directory' },
    { name: 'lib64', type: 'directory' },
    { name: 'lib', type: 'symlink', linkname: 'usr/lib' },
    {
      name: 'lib64/ld-linux-x86-64.so.2',
      content: readFileSync(realpathSync('/lib64/ld-linux-x86-64.so.2')),
      mode: 0o755,
    },
  ];
  const ldd = execFileSync('ldd', [hello], { encoding: 'utf8' });
  for (const m of ldd.matchAll(/^\s*(\S+) => (\/\S+)/gm)) {
    entries.push({ name: `usr/lib/x86_64-linux-gnu/${m[1]}`, content: readFileSync(realpathSync(m[2])), mode: 0o755 });
  }
  for (const f of readdirSync(join(LIB, 'ucx')).filter((n) => /\.so\.\d+$/.test(n))) {
    entries.push({
      name: `usr/lib/x86_64-linux-gnu/ucx/${basename(f)}`,
      content: readFileSync(realpathSync(join(LIB, 'ucx', f))),
      mode: 0o755,
    });
  }
  return entries;
}

test.before(async () => {
  await stack.start();
  const build = mkdtempSync(join(tmpdir(), 'mpi-hello-'));
  try {
    writeFileSync(join(build, 'hello.c'), HELLO_C);
    execFileSync('mpicc.mpich', ['-O2', '-o', join(build, 'mpi-hello'), join(build, 'hello.c')]);
    const layer = gzipSync(await tarLayer(mpiImageEntries(join(build, 'mpi-hello'))));
    await pushImage(stack.reg!.url, 'team/mpi', '1', { layers: [layer], config: imageConfig({ Env: ['PATH=/app'] }) });
  } finally {
    rmSync(build, { recursive: true, force: true });
  }
  await stack.pull('team/mpi:1');
});

test.after.always(async () => {
  await stack.stop();
});

test('sbatch -n 4 --image with srun --mpi=pmi2 shifter: 4 ranks, one world, a correct allreduce', async (t) => {
  const script = `#!/bin/sh\nsrun --mpi=pmi2 -n 4 -O ${LAUNCHER} /app/mpi-hello\n`;
  const r = await stack.sbatch(['-n', '4', '-O', '--image=team/mpi:1', '-o', join(stack.work, 'mpi-%j.out')], script);
  t.is(r.code, 0, r.stderr);
  const jobId = r.stdout.trim();
  const job = await stack.slurm!.waitForJob(jobId, 180_000);
  const out = await readFile(join(stack.work, `mpi-${jobId}.out`), 'utf8');
  t.is(job.state, 'COMPLETED', out);
  const ranks = out
    .split('\n')
    .filter((l) => l.startsWith('rank '))
    .sort();
  t.deepEqual(
    ranks,
    [0, 1, 2, 3].map((i) => `rank ${i} of 4: allreduce 6`),
    out,
  );
});

test('srun --mpi=pmi2 -n 4 --image without shifter: 4 ranks in the image, one world', async (t) => {
  const r = await stack.slurm!.run('srun', ['--mpi=pmi2', '-n', '4', '-O', '--image=team/mpi:1', 'mpi-hello'], {
    user: stack.user,
    cwd: stack.work,
    env: stack.jobEnv(),
    timeoutMs: 180_000,
  });
  t.is(r.code, 0, r.stderr);
  t.deepEqual(
    r.stdout
      .split('\n')
      .filter((l) => l.startsWith('rank '))
      .sort(),
    [0, 1, 2, 3].map((i) => `rank ${i} of 4: allreduce 6`),
    r.stdout + r.stderr,
  );
});
