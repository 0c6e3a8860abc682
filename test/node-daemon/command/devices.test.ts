import test from 'ava';
import {
  checkDevicePattern,
  claimedByModules,
  launchGpus,
  selectDevices,
  type DeviceDirEntry,
} from '../../../node-daemon/command/devices.js';

const dev: DeviceDirEntry[] = [
  { name: 'nvidia-caps', kind: 'other' },
  { name: 'nvidia-modeset', kind: 'char' },
  { name: 'nvidia-uvm', kind: 'char' },
  { name: 'nvidia-uvm-tools', kind: 'char' },
  { name: 'nvidia0', kind: 'char' },
  { name: 'nvidia1', kind: 'char' },
  { name: 'nvidia10', kind: 'char' },
  { name: 'nvidia2', kind: 'char' },
  { name: 'nvidiactl', kind: 'char' },
  { name: 'nvme0n1', kind: 'block' },
  { name: 'sda', kind: 'block' },
];
const gpu = [{ module: 'gpu', patterns: ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia*'] }];

test('a glob takes the character devices it matches; /dev/nvidia<N> only for the launch GPUs', (t) => {
  t.deepEqual(selectDevices(gpu, dev, undefined), [
    'nvidia-modeset',
    'nvidia-uvm',
    'nvidia-uvm-tools',
    'nvidia0',
    'nvidia1',
    'nvidia10',
    'nvidia2',
    'nvidiactl',
  ]);
  t.deepEqual(selectDevices(gpu, dev, [1]), [
    'nvidia-modeset',
    'nvidia-uvm',
    'nvidia-uvm-tools',
    'nvidia1',
    'nvidiactl',
  ]);
  t.deepEqual(
    selectDevices(gpu, dev, []).filter((n) => /^nvidia\d/.test(n)),
    [],
    'an empty GPU list gives no GPU',
  );
  t.deepEqual(selectDevices([{ module: 'disk', patterns: ['/dev/sd*', '/dev/nvme*'] }], dev, undefined), []);
});

test('a literal entry that is missing or not a character device is an error naming the module', (t) => {
  t.throws(() => selectDevices([{ module: 'gpu', patterns: ['/dev/nvidia9'] }], dev, undefined), {
    message: 'module gpu: /dev/nvidia9 does not exist on this node; fix module_gpu_devices',
  });
  t.throws(() => selectDevices([{ module: 'disk', patterns: ['/dev/sda'] }], dev, undefined), {
    message: 'module disk: /dev/sda is not a character device; fix module_disk_devices',
  });
  t.throws(() => selectDevices([{ module: 'gpu', patterns: ['/dev/nvidia-caps'] }], dev, undefined), {
    message: /nvidia-caps is not a character device/,
  });
});

test('GPUs: the Slurm step, else the job, else CUDA_VISIBLE_DEVICES indices', (t) => {
  t.deepEqual(launchGpus({ SLURM_STEP_GPUS: '3', SLURM_JOB_GPUS: '2,3', CUDA_VISIBLE_DEVICES: '0' }), [3]);
  t.deepEqual(launchGpus({ SLURM_JOB_GPUS: '3,2', CUDA_VISIBLE_DEVICES: '0' }), [2, 3]);
  t.deepEqual(launchGpus({ CUDA_VISIBLE_DEVICES: '1' }), [1]);
  t.deepEqual(launchGpus({ CUDA_VISIBLE_DEVICES: '' }), []);
  t.is(launchGpus({ CUDA_VISIBLE_DEVICES: 'GPU-8f1c2a4e-0000-1111-2222-333344445555' }), undefined);
  t.is(launchGpus({}), undefined);
});

test('entries must name something directly in /dev', (t) => {
  t.is(checkDevicePattern('gpu', '/dev/nvidia*'), undefined);
  t.regex(checkDevicePattern('gpu', '/dev/../sda') ?? '', /module_gpu_devices: '\/dev\/\.\.\/sda' is not/);
  t.regex(checkDevicePattern('gpu', '/dev/..') ?? '', /is not \/dev\/<name>/);
  t.regex(checkDevicePattern('gpu', '/etc/passwd') ?? '', /is not \/dev\/<name>/);
  t.true(claimedByModules(gpu, 'nvidia7'));
  t.false(claimedByModules(gpu, 'null'));
});
