/**
 * bin/prep-gpu on a fake NVIDIA driver (no GPU needed) found through a test ld.so cache: the
 * driver libraries, their non-glibc dependencies, nvidia-smi, the driver version, the lines.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseModuleManifest } from '../../common/module-manifest.js';
import { REPO } from '../node-daemon/runtime-fixture.js';
import { buildFakeDriver, buildLdCache } from './fake-nvidia.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'prep-gpu-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

async function prepGpu(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(join(REPO, 'bin', 'prep-gpu'), args);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

test('a fake driver through an ld.so cache: libraries, dependencies, nvidia-smi, version, lines', async (t) => {
  const driver = buildFakeDriver(join(dir, 'driver'), '550.54.14');
  const cache = buildLdCache(join(dir, 'ld.so.cache'), [driver.libDir]);
  const dest = join(dir, 'gpu');
  const r = await prepGpu([dest, '--ldconfig-cache', cache, '--tools-from', driver.binDir]);
  t.is(r.code, 0, r.stderr);
  t.is(
    r.stdout,
    [
      `module_gpu_copyPath=${dest}`,
      'module_gpu_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/gpu/lib64:/opt/udiImage/modules/gpu/lib64/dep' +
        ' PATH=/opt/udiImage/modules/gpu/bin',
      'module_gpu_devices=/dev/nvidiactl;/dev/nvidia-uvm;/dev/nvidia-uvm-tools;/dev/nvidia-modeset;/dev/nvidia*',
      '',
    ].join('\n'),
  );
  t.is(readlinkSync(join(dest, 'lib64', 'libcuda.so.1')), 'libcuda.so.550.54.14');
  t.is(readlinkSync(join(dest, 'lib64', 'libnvidia-ml.so.1')), 'libnvidia-ml.so.550.54.14');
  const manifest = parseModuleManifest(readFileSync(join(dest, 'manifest.json'), 'utf8'), 'manifest.json');
  t.like(manifest, { kind: 'gpu', name: 'gpu', architecture: 'x86_64', gpu: { driverVersion: '550.54.14' } });
  t.deepEqual(
    manifest.files.map((f) => f.path),
    [
      'bin/nvidia-smi',
      'lib64/dep/libfakehelper.so.1',
      'lib64/libcuda.so.1',
      'lib64/libcuda.so.550.54.14',
      'lib64/libnvidia-ml.so.1',
      'lib64/libnvidia-ml.so.550.54.14',
    ],
  );
  // The tool runs from the module alone, its helper from lib64/dep.
  const smi = await run(join(dest, 'bin', 'nvidia-smi'), [], {
    env: { LD_LIBRARY_PATH: `${join(dest, 'lib64')}:${join(dest, 'lib64', 'dep')}` },
  });
  t.is(smi.stdout, 'NVIDIA-SMI fake, driver 550.54.14 (helper)\n');
});

test('--from finds the driver without any cache entry; no driver at all is a clear error', async (t) => {
  const driver = buildFakeDriver(join(dir, 'driver2'), '535.104.05');
  const dest = join(dir, 'gpu2');
  const r = await prepGpu([dest, '--from', driver.libDir, '--tools-from', driver.binDir, '--name', 'cuda']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^module_cuda_copyPath=/);
  const manifest = parseModuleManifest(readFileSync(join(dest, 'manifest.json'), 'utf8'), 'manifest.json');
  t.is(manifest.gpu!.driverVersion, '535.104.05');

  const none = await prepGpu([join(dir, 'gpu3')]);
  t.is(none.code, 1);
  t.is(
    none.stderr,
    'prep-gpu: no libcuda.so.1 in ldconfig -p: install the NVIDIA driver, or point --from at its libraries\n',
  );
});
