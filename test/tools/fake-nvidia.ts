/**
 * An NVIDIA driver's user-space side without a GPU, built with gcc: libcuda.so.<version>
 * (soname libcuda.so.1; cuInit, cuDriverGetVersion), libnvidia-ml.so.<version> (soname
 * libnvidia-ml.so.1) needing a non-glibc helper library, and an nvidia-smi program linked
 * against libnvidia-ml. The reported CUDA driver version is derived from the driver version so a
 * test can tell two fake drivers apart.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What cuDriverGetVersion returns for a fake driver `major.minor...`: major*10 + minor%10, as a number. */
export function fakeCudaVersion(driverVersion: string): number {
  const [major, minor] = driverVersion.split('.').map(Number);
  return major * 10 + (minor % 10);
}

const CUDA_C = (v: number): string => `
int cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
int cuDriverGetVersion(int *version) { *version = ${v}; return 0; }
`;

const NVML_C = (driver: string): string => `
extern const char *fake_helper_name(void);
const char *nvmlSystemGetDriverVersionFake(void) { return "${driver}"; }
const char *nvmlHelper(void) { return fake_helper_name(); }
`;

const HELPER_C = 'const char *fake_helper_name(void) { return "helper"; }\n';

const SMI_C = `#include <stdio.h>
extern const char *nvmlSystemGetDriverVersionFake(void);
extern const char *nvmlHelper(void);
int main(void) { printf("NVIDIA-SMI fake, driver %s (%s)\\n", nvmlSystemGetDriverVersionFake(), nvmlHelper()); return 0; }
`;

export interface FakeDriver {
  /** The libraries, as a driver installs them: real files plus soname links. */
  libDir: string;
  binDir: string;
  version: string;
}

function gcc(args: string[]): void {
  execFileSync('gcc', args, { stdio: ['ignore', 'ignore', 'inherit'] });
}

export function buildFakeDriver(dir: string, version: string): FakeDriver {
  const libDir = join(dir, 'lib');
  const binDir = join(dir, 'bin');
  const src = join(dir, 'src');
  for (const d of [libDir, binDir, src]) mkdirSync(d, { recursive: true });
  const write = (name: string, text: string): string => {
    writeFileSync(join(src, name), text);
    return join(src, name);
  };
  const shared = (out: string, soname: string, source: string, extra: string[] = []): void => {
    gcc(['-shared', '-fPIC', '-O2', `-Wl,-soname,${soname}`, '-o', join(libDir, out), source, ...extra]);
    if (out !== soname) symlinkSync(out, join(libDir, soname));
  };
  shared('libfakehelper.so.1', 'libfakehelper.so.1', write('helper.c', HELPER_C));
  shared(`libcuda.so.${version}`, 'libcuda.so.1', write('cuda.c', CUDA_C(fakeCudaVersion(version))));
  shared(`libnvidia-ml.so.${version}`, 'libnvidia-ml.so.1', write('nvml.c', NVML_C(version)), [
    `-L${libDir}`,
    '-l:libfakehelper.so.1',
  ]);
  gcc([
    '-O2',
    '-o',
    join(binDir, 'nvidia-smi'),
    write('smi.c', SMI_C),
    `-L${libDir}`,
    '-l:libnvidia-ml.so.1',
    `-Wl,-rpath-link,${libDir}`,
  ]);
  return { libDir, binDir, version };
}

/** An ld.so cache (ldconfig -C) holding the system's libraries and `dirs`. */
export function buildLdCache(file: string, dirs: readonly string[]): string {
  const conf = `${file}.conf`;
  writeFileSync(conf, `${dirs.join('\n')}\n`);
  execFileSync('ldconfig', ['-X', '-C', file, '-f', conf]);
  return file;
}
