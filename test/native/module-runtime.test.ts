/**
 * Site modules at launch, end to end: the real launcher as an unprivileged user, a real shifterd
 * and helper. Every module key (copyPath at /opt/udiImage/modules/<name>, siteFs, the env keys,
 * conflict, enabled, defaultModules), roothooks (once per environment, as root, before the
 * user's volumes) and userhooks (per launch, as the user inside the container), their time
 * limit and output in shifterd's log, and module devices from a fake device root made with
 * mknod. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShifterdFixture, ensureTestUser } from '../node-daemon/runtime-fixture.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();
/** An image with a /dev of its own (most images have one), unlike the fixture's. */
let withDev: string;
/** A character major no driver uses (240-254 are for local use; this kernel gives 245+ away). */
const FAKE_MAJOR = 242;
let devRoot: string;

function write(path: string, text: string, mode = 0o755): string {
  writeFileSync(path, text, { mode });
  chmodSync(path, mode);
  return path;
}

test.before(async () => {
  const mods = join(fx.dir, 'modules');
  for (const m of ['tools', 'uh', 'hang']) mkdirSync(join(mods, m), { recursive: true, mode: 0o755 });
  write(join(mods, 'tools', 'tool.txt'), 'tool from copyPath\n', 0o644);
  write(
    join(mods, 'uh', 'hook.sh'),
    [
      'echo "uid=$(id -u) cwd=$(pwd) req=$SHIFTER_IMAGEREQUEST"',
      'grep -E "^(CapBnd|CapEff|NoNewPrivs)" /proc/self/status | busybox tr -s "\\t " " "',
      'echo "userhook note" >&2',
    ].join('\n'),
  );
  write(join(mods, 'hang', 'hook.sh'), 'echo "about to hang" >&2\nsleep 600\n');
  mkdirSync(join(fx.dir, 'data'), { mode: 0o777 });
  chmodSync(join(fx.dir, 'data'), 0o777);
  const counter = join(fx.dir, 'roothook-runs');
  const rootOk = write(
    join(fx.dir, 'root-ok.sh'),
    [
      'echo run >> ' + counter,
      'echo "roothook uid=$(id -u) data=$(ls data 2>/dev/null | wc -l)" > etc/roothook-ran',
      'echo "hello from the roothook"',
    ].join('\n'),
  );
  const rootBad = write(join(fx.dir, 'root-bad.sh'), 'echo "first" >&2\necho "cannot set up the fabric" >&2\nexit 7\n');
  devRoot = mkdtempSync(join(tmpdir(), 'shifter-fake-dev-'));
  chmodSync(devRoot, 0o755);
  const nodes: Array<[string, number]> = [
    ['nvidia0', 0],
    ['nvidia1', 1],
    ['nvidia2', 2],
    ['nvidiactl', 255],
    ['nvidia-uvm', 254],
  ];
  for (const [name, minor] of nodes) {
    execFileSync('mknod', ['-m', '0666', join(devRoot, name), 'c', String(FAKE_MAJOR), String(minor)]);
  }
  process.env.SHIFTERD_TEST_DEVICE_ROOT = devRoot;
  const rootfs = join(fx.dir, 'rootfs-dev');
  for (const d of ['bin', 'dev', 'etc']) mkdirSync(join(rootfs, d), { recursive: true });
  execFileSync('cp', ['/bin/busybox', join(rootfs, 'bin', 'busybox')]);
  for (const applet of ['sh', 'ls']) symlinkSync('busybox', join(rootfs, 'bin', applet));
  writeFileSync(join(rootfs, 'dev', 'from-image'), 'image file in /dev\n');
  const id = createHash('sha256').update(`module-runtime-dev-${process.pid}`).digest('hex');
  const squashfs = join(fx.imagePath, `${id}.squashfs`);
  execFileSync('mksquashfs', [rootfs, squashfs, '-all-root', '-no-xattrs', '-quiet', '-noappend']);
  writeFileSync(join(fx.imagePath, `${id}.meta`), 'FORMAT: squashfs\nENV: PATH=/bin\n', { mode: 0o600 });
  withDev = `id:${id}`;
  fx.writeConfig([
    'siteEnv=SHIFTER_RUNTIME=1',
    'defaultModules=tools',
    `module_tools_copyPath=${join(mods, 'tools')}`,
    `module_tools_siteFs=${join(mods, 'tools')}:/tools:ro`,
    'module_tools_siteEnv=TOOLS=on DROPPED=x',
    'module_tools_siteEnvPrepend=PATH=/opt/udiImage/modules/tools/bin',
    'module_tools_siteEnvAppend=LIST=tools',
    'module_tools_siteEnvUnset=DROPPED',
    'module_later_siteEnvAppend=LIST=later',
    'module_later_siteEnvPrepend=PATH=/later/bin',
    'module_later_conflict=other',
    'module_other_siteEnv=OTHER=1',
    'module_off_enabled=0',
    `module_rootok_roothook=${rootOk}`,
    `module_rootbad_roothook=${rootBad}`,
    `module_uh_copyPath=${join(mods, 'uh')}`,
    'module_uh_userhook=/opt/udiImage/modules/uh/hook.sh',
    `module_hang_copyPath=${join(mods, 'hang')}`,
    'module_hang_userhook=/opt/udiImage/modules/hang/hook.sh',
    'module_gpu_devices=/dev/nvidiactl;/dev/nvidia-uvm;/dev/nvidia*',
    'moduleHookTimeout=3',
  ]);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
  if (devRoot) rmSync(devRoot, { recursive: true, force: true });
});

interface LogEntry {
  msg: string;
  module?: string;
  hook?: string;
  stream?: string;
}

function hookLog(module: string): LogEntry[] {
  return fx.log
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogEntry)
    .filter((e) => e.module === module);
}

/**
 * shifterd's log reaches the test through a pipe, after the launch has answered: wait (up to 20 s)
 * until `count` hook lines of `module` are there, then read them all.
 */
async function hookLogOf(module: string, count: number): Promise<LogEntry[]> {
  for (const until = Date.now() + 20_000; Date.now() < until;) {
    if (hookLog(module).length >= count) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return hookLog(module);
}

const image = () => `--image=${fx.images.bare.name}`;

test('defaultModules apply; copyPath is at /opt/udiImage/modules/<name>; every env key in module order', async (t) => {
  const r = await fx.run([image(), 'sh', '-c', 'cat /opt/udiImage/modules/tools/tool.txt /tools/tool.txt; env'], {
    env: { DROPPED: 'from-caller', LIST: 'caller' },
  });
  t.is(r.code, 0, r.stderr);
  const lines = r.stdout.split('\n');
  t.deepEqual(lines.slice(0, 2), ['tool from copyPath', 'tool from copyPath']);
  t.true(lines.includes('TOOLS=on'));
  t.true(lines.includes('LIST=caller:tools'));
  t.true(lines.includes('PATH=/opt/udiImage/modules/tools/bin:/bin'));
  t.false(
    lines.some((l) => l.startsWith('DROPPED=')),
    'siteEnvUnset removes it',
  );
  const both = await fx.run([image(), '--module=later,tools', 'sh', '-c', 'echo $LIST; echo $PATH']);
  t.is(both.stdout, 'later:tools\n/opt/udiImage/modules/tools/bin:/later/bin:/bin\n');
  const none = await fx.run([image(), '--module=none', 'sh', '-c', 'ls /opt/udiImage 2>&1; echo "[$TOOLS]"']);
  t.regex(none.stdout, /No such file or directory\n\[\]\n$/);
});

test('unknown, disabled and conflicting modules are one-line errors naming the module', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['--module=nosuch', /^shifter: module 'nosuch' is not configured on this system \(available: .*tools.*\)\n$/],
    ['--module=off', /^shifter: module 'off' is disabled on this system\n$/],
    ['--module=later,other', /^shifter: modules 'later' and 'other' conflict: choose one with --module\n$/],
  ];
  for (const [option, message] of cases) {
    const r = await fx.run([image(), option, 'true']);
    t.is(r.code, 1, option);
    t.regex(r.stderr, message);
  }
});

test('a roothook runs as root in the container being built, before user volumes, once per environment', async (t) => {
  const args = [image(), '--module=rootok', `--volume=${join(fx.dir, 'data')}:/data`, 'cat', '/etc/roothook-ran'];
  const first = await fx.run(args);
  const second = await fx.run(args);
  t.is(first.code, 0, first.stderr);
  t.is(first.stdout, 'roothook uid=0 data=0\n');
  t.is(second.stdout, first.stdout);
  t.is(readFileSync(join(fx.dir, 'roothook-runs'), 'utf8'), 'run\n', 'the second launch reused the environment');
  t.deepEqual(
    (await hookLogOf('rootok', 1)).map((e) => [e.hook, e.stream, e.msg]),
    [['roothook', 'stdout', 'hello from the roothook']],
  );
});

test('a failing roothook fails the launch with its exit code and its last stderr lines', async (t) => {
  const r = await fx.run([image(), '--module=rootbad', 'true']);
  t.is(r.code, 7);
  const script = join(fx.dir, 'root-bad.sh');
  t.is(
    r.stderr,
    `shifter: shifter-nshelper: module rootbad roothook ${script}: exited with status 7 ` +
      '(last stderr lines: first | cannot set up the fabric)\n',
  );
});

test('a userhook runs per launch as the user inside the container, caps dropped, output in the log', async (t) => {
  for (let i = 0; i < 2; i++) {
    const r = await fx.run([image(), '--module=uh', 'echo', 'command ran'], { cwd: '/tmp' });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'command ran\n');
  }
  const lines = (await hookLogOf('uh', 10)).map((e) => `${e.hook} ${e.stream}: ${e.msg}`);
  const once = [
    `userhook stdout: uid=${user.uid} cwd=/tmp req=${fx.images.bare.name}`,
    'userhook stdout: CapEff: 0000000000000000',
    'userhook stdout: CapBnd: 0000000000000000',
    'userhook stdout: NoNewPrivs: 1',
    'userhook stderr: userhook note',
  ];
  t.deepEqual([...lines].sort(), [...once, ...once].sort());
});

test('a hanging userhook is killed at moduleHookTimeout and the launch fails with 124', async (t) => {
  const started = Date.now();
  const r = await fx.run([image(), '--module=hang', 'echo', 'never']);
  const seconds = (Date.now() - started) / 1000;
  t.is(r.code, 124);
  t.is(r.stdout, '');
  t.is(
    r.stderr,
    'shifter: shifter-nshelper: module hang userhook /opt/udiImage/modules/hang/hook.sh: did not finish within 3 s ' +
      'and was killed (moduleHookTimeout in udiRoot.conf) (last stderr lines: about to hang)\n',
  );
  t.true(seconds >= 3 && seconds < 60, `took ${seconds} s`);
});

test('module devices come from the device root, /dev/nvidia<N> narrowed to the launch GPUs', async (t) => {
  const list =
    'ls /dev | grep nvidia | busybox tr "\\n" " "; stat -c "%t:%T" /dev/nvidia1; test -e /dev/null && echo null';
  const one = await fx.run([image(), '--module=gpu', '-v', 'sh', '-c', list], { env: { CUDA_VISIBLE_DEVICES: '1' } });
  t.is(one.code, 0, one.stderr);
  t.is(one.stdout, `nvidia-uvm nvidia1 nvidiactl ${FAKE_MAJOR.toString(16)}:1\nnull\n`);
  const all = await fx.run([image(), '--module=gpu', 'sh', '-c', 'ls /dev | grep nvidia | busybox tr "\\n" " "']);
  t.is(all.stdout, 'nvidia-uvm nvidia0 nvidia1 nvidia2 nvidiactl ');
  const slurm = await fx.run([image(), '--module=gpu', '-v', 'sh', '-c', 'ls /dev | grep "nvidia[0-9]"'], {
    env: { SLURM_JOB_GPUS: '0,2', CUDA_VISIBLE_DEVICES: '0,1' },
  });
  t.is(slurm.stdout, 'nvidia0\nnvidia2\n');
  t.regex(slurm.stderr, /environment created/, 'another device set is another environment');
  const again = await fx.run([image(), '--module=gpu', '-v', 'true'], { env: { CUDA_VISIBLE_DEVICES: '1' } });
  t.regex(again.stderr, /environment reused/);
  const pts = await fx.run([
    image(),
    '--module=gpu',
    'sh',
    '-c',
    'ls -d /dev/pts /dev/shm && ls /dev | grep -c "^loop[0-9]"',
  ]);
  t.is(pts.stdout, '/dev/pts\n/dev/shm\n0\n', 'no block devices in a rebuilt /dev');
});

test('module devices in an image that has a /dev of its own: the host entries and the devices join it', async (t) => {
  const r = await fx.run(
    [`--image=${withDev}`, '--module=gpu', 'sh', '-c', 'ls /dev | grep -e nvidia1 -e from -e null'],
    {
      env: { CUDA_VISIBLE_DEVICES: '1' },
    },
  );
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'from-image\nnull\nnvidia1\n');
});
