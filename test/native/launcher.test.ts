/**
 * The launcher against real namespaces: a squashfs image attached on a loop device, locked
 * environments built by shifter-nshelper, the `shifter` binary run as real unprivileged users
 * through a minimal launch-protocol daemon. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attachImage,
  createEnvironment,
  nativeDir,
  type Environment,
  type EnvironmentSpec,
  type ImageMount,
  type PeerCredentials,
} from '../../node-daemon/adapters/index.js';
import { collectOutput, ensureUser, type RunResult, type TestUser } from './environment-run.js';
import { buildTestImage } from './image-fixture.js';
import { encodeReply, startLaunchDaemon, type LaunchDaemon, type LaunchReply } from './launch-daemon.js';

const EXTRA_GROUP = 100; // "users": a supplementary group that must survive into the container

let dir: string;
let image: ImageMount;
let daemon: LaunchDaemon;
let user1: TestUser;
let user2: TestUser;
let attackTool: string;
const environments = new Map<number, Promise<Environment>>();

function specFor(cred: PeerCredentials, user: TestUser): EnvironmentSpec {
  return {
    image,
    uid: cred.uid,
    gid: cred.gid,
    groups: cred.groups,
    scaffoldDirs: ['/etc'],
    mounts: [
      { kind: 'bind', source: '/dev', target: '/dev', readOnly: false, recursive: true, nodev: false },
      { kind: 'bind', source: '/sys', target: '/sys', readOnly: true, recursive: true },
      { kind: 'proc', target: '/proc' },
      { kind: 'bind', source: join(dir, 'tmp'), target: '/tmp', readOnly: false },
      { kind: 'tmpfs', target: '/run', sizeBytes: 1 << 20 },
      { kind: 'bind', source: join(dir, 'data', user.name), target: '/data', readOnly: true, asUser: true },
      { kind: 'file', target: '/etc/passwd', content: `${user.name}:x:${cred.uid}:${cred.gid}::/:/bin/sh\n` },
      {
        kind: 'file',
        target: '/etc/group',
        content: `${user.name}:x:${cred.gid}:\nusers:x:${EXTRA_GROUP}:${user.name}\n`,
      },
      { kind: 'symlink', target: '/etc/mtab', linkTo: '/proc/mounts' },
    ],
  };
}

async function environmentFor(cred: PeerCredentials): Promise<Environment> {
  let env = environments.get(cred.uid);
  if (!env) {
    const user = cred.uid === user1.uid ? user1 : user2;
    env = createEnvironment(specFor(cred, user));
    environments.set(cred.uid, env);
  }
  return env;
}

/**
 * Test daemon policy: argv[1] may be --fail=CODE, --cwd=DIR, --as=UID (someone else's env),
 * or --broken=magic|nofds|swapped (a daemon that breaks the protocol).
 */
async function decide(
  req: { argv: string[]; env: string[]; cwd: string },
  cred: PeerCredentials,
): Promise<LaunchReply> {
  let args = req.argv.slice(1);
  let cwd = req.cwd;
  let owner = cred;
  const opt = args[0] ?? '';
  if (opt.startsWith('--fail='))
    return { kind: 'error', exitCode: Number(opt.slice(7)), message: 'shifterd: image not found: test:missing\n' };
  if (opt.startsWith('--broken=')) {
    const env = await environmentFor(cred);
    const exec = encodeReply({
      kind: 'exec',
      userNsFd: -1,
      mntNsFd: -1,
      argv: ['true'],
      env: [],
      cwd: '/',
      notice: '',
    });
    if (opt === '--broken=magic')
      return { kind: 'raw', data: Buffer.concat([Buffer.from('HTTP'), exec.subarray(4)]), fds: [] };
    if (opt === '--broken=nofds') return { kind: 'raw', data: exec, fds: [] };
    return { kind: 'raw', data: exec, fds: [env.mntNsFd, env.userNsFd] };
  }
  if (opt.startsWith('--cwd=')) {
    cwd = opt.slice(6);
    args = args.slice(1);
  }
  if (opt.startsWith('--as=')) {
    const other = Number(opt.slice(5));
    owner = { pid: 0, uid: other, gid: other === user1.uid ? user1.gid : user2.gid, groups: [] };
    args = args.slice(1);
  }
  const env = await environmentFor(owner);
  return {
    kind: 'exec',
    userNsFd: env.userNsFd,
    mntNsFd: env.mntNsFd,
    argv: args.length ? args : ['/bin/sh'],
    env: ['PATH=/usr/bin:/bin', 'HOME=/', ...req.env.filter((e) => e.startsWith('TEST_'))],
    cwd,
    notice: '',
  };
}

function runAs(
  user: TestUser,
  argv: string[],
  opts: { cwd?: string; env?: Record<string, string>; stdioFds?: number[] } = {},
): Promise<RunResult> {
  return collectOutput(
    spawn(
      'setpriv',
      [`--reuid=${user.uid}`, `--regid=${user.gid}`, `--groups=${user.gid},${EXTRA_GROUP}`, '--', ...argv],
      {
        cwd: opts.cwd ?? '/',
        env: { SHIFTERD_SOCKET: daemon.socketPath, PATH: '/usr/bin:/bin', ...opts.env },
        stdio: ['ignore', 'pipe', 'pipe', ...(opts.stdioFds ?? [])],
      },
    ),
  );
}

const shifter = (user: TestUser, args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) =>
  runAs(user, [join(nativeDir(), 'shifter'), ...args], opts);

test.before(async () => {
  user1 = ensureUser('shiftertest1');
  user2 = ensureUser('shiftertest2');
  dir = mkdtempSync(join(tmpdir(), 'shifter-native-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
  chmodSync(join(dir, 'tmp'), 0o1777);
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  for (const u of [user1, user2]) {
    mkdirSync(join(dir, 'data', u.name), { mode: 0o700 });
    writeFileSync(join(dir, 'data', u.name, 'owner'), `${u.name}\n`);
    chownSync(join(dir, 'data', u.name), u.uid, u.gid);
  }
  const fixtures = join(process.cwd(), 'test/native/fixtures');
  attackTool = join(dir, 'ns-attack');
  execFileSync('gcc', ['-O2', '-o', attackTool, join(fixtures, 'ns-attack.c')]);
  chmodSync(attackTool, 0o755);
  image = await attachImage(buildTestImage(dir, fixtures));
  daemon = await startLaunchDaemon(join(dir, 'shifterd.sock'), decide);
});

test.after.always(async () => {
  await daemon?.close();
  for (const env of environments.values())
    await env.then(
      (e) => e.close(),
      () => undefined,
    );
  image?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("the command runs as the user, with the user's groups, and its exit code and stdout pass through", async (t) => {
  const id = await shifter(user1, ['id']);
  t.is(id.code, 0, id.stderr);
  t.regex(id.stdout, new RegExp(`^uid=${user1.uid}\\(shiftertest1\\) gid=${user1.gid}\\(shiftertest1\\) groups=`));
  const groups = (await shifter(user1, ['id', '-G'])).stdout
    .trim()
    .split(' ')
    .map(Number)
    .sort((a, b) => a - b);
  t.deepEqual(
    groups,
    [EXTRA_GROUP, user1.gid].sort((a, b) => a - b),
  );
  const r = await shifter(user1, ['sh', '-c', 'echo out; echo err >&2; exit 42']);
  t.is(r.code, 42);
  t.is(r.stdout, 'out\n');
  t.is(r.stderr, 'err\n');
});

test('the command replaces the launcher in place (same PID)', async (t) => {
  const r = await shifter(user1, ['sh', '-c', 'echo $$']);
  t.is(r.code, 0, r.stderr);
  t.is(Number(r.stdout.trim()), r.pid);
});

test('no capabilities, no new privileges, and a setuid-root binary gives no root', async (t) => {
  const status = await shifter(user1, ['cat', '/proc/self/status']);
  t.is(status.code, 0, status.stderr);
  for (const key of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
    t.regex(status.stdout, new RegExp(`^${key}:\\s+0+$`, 'm'), key);
  }
  t.regex(status.stdout, /^NoNewPrivs:\s+1$/m);
  const suid = await shifter(user1, ['showid']);
  t.is(suid.code, 0, suid.stderr);
  t.is(suid.stdout, `${user1.uid} ${user1.uid} ${user1.uid}\n`);
});

test("the image's device node cannot be opened and the root is read-only", async (t) => {
  const dev = await shifter(user1, ['cat', '/home/evildev']);
  t.not(dev.code, 0);
  t.regex(dev.stderr, /Permission denied/);
  const touch = await shifter(user1, ['touch', '/newfile']);
  t.not(touch.code, 0);
  t.regex(touch.stderr, /Read-only file system/);
  const mounts = await shifter(user1, ['cat', '/proc/self/mountinfo']);
  const home = mounts.stdout.split('\n').find((l) => l.split(' ')[4] === '/home');
  t.truthy(home);
  t.regex(home!, /\bnosuid\b/);
  t.regex(home!, /\bnodev\b/);
});

test("site files replace the image's, image /etc content stays, and the mtab symlink exists", async (t) => {
  const r = await shifter(user1, [
    'sh',
    '-c',
    'cat /etc/passwd /etc/image-only; ls -l /etc/mtab; cat /data/owner; ls -d /run',
  ]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, new RegExp(`^shiftertest1:x:${user1.uid}:`));
  t.notRegex(r.stdout, /image:\/root/);
  t.regex(r.stdout, /from the image/);
  t.regex(r.stdout, /mtab -> \/proc\/mounts/);
  t.regex(r.stdout, /shiftertest1\n\/run/);
});

test('no daemon fd leaks into the container: it has exactly the fds the caller gave', async (t) => {
  const fdsOf = (out: string) =>
    out
      .split('\n')
      .filter((l) => l.includes(' -> '))
      .map((l) => Number(l.replace(/.* (\d+) -> .*/, '$1')));
  const inside = await shifter(user1, ['ls', '-l', '/proc/self/fd/']);
  t.is(inside.code, 0, inside.stderr);
  // The same busybox ls on the host, started the same way, is the baseline (it includes
  // whatever the test runner itself passes down, and ls's own directory fd).
  const host = await runAs(user1, ['/usr/bin/busybox', 'ls', '-l', '/proc/self/fd/']);
  t.deepEqual(fdsOf(inside.stdout), fdsOf(host.stdout));
  t.true(fdsOf(inside.stdout).length >= 3);
});

test('exit 127 for a missing command, 126 for a non-executable file, daemon errors pass through', async (t) => {
  const missing = await shifter(user1, ['no-such-command']);
  t.is(missing.code, 127);
  t.is(missing.stderr, 'shifter: no-such-command: command not found\n');
  const noexec = await shifter(user1, ['/bin/not-executable']);
  t.is(noexec.code, 126);
  t.is(noexec.stderr, 'shifter: /bin/not-executable: Permission denied\n');
  const failed = await shifter(user1, ['--fail=3', 'true']);
  t.is(failed.code, 3);
  t.is(failed.stderr, 'shifterd: image not found: test:missing\n');
});

test('a missing working directory falls back to / with a warning', async (t) => {
  const r = await shifter(user1, ['--cwd=/no/such/dir', 'pwd']);
  t.is(r.code, 0);
  t.is(r.stdout, '/\n');
  t.regex(r.stderr, /^shifter: WARNING: cannot chdir to \/no\/such\/dir: No such file or directory, staying in \/\n$/);
  const here = await shifter(user1, ['--cwd=/etc', 'pwd']);
  t.is(here.stdout, '/etc\n');
});

test('a daemon breaking the protocol gets one clear line and exit 1, nothing runs', async (t) => {
  const broken = async (how: string) => {
    const r = await shifter(user1, [`--broken=${how}`]);
    t.is(r.code, 1);
    t.is(r.stdout, '');
    return r.stderr;
  };
  t.is(await broken('magic'), 'shifter: read reply from shifterd: bad magic (not a shifterd socket?)\n');
  t.is(await broken('nofds'), 'shifter: read reply from shifterd: exec reply without exactly 2 namespace fds\n');
  t.is(await broken('swapped'), 'shifter: check namespace fd: expected a user namespace fd, got another kind\n');
});

test('shifterd not running: one clear line and exit 1', async (t) => {
  const r = await runAs(user1, [join(nativeDir(), 'shifter'), 'true'], {
    env: { SHIFTERD_SOCKET: join(dir, 'nothing.sock') },
  });
  t.is(r.code, 1);
  t.regex(
    r.stderr,
    /^shifter: shifterd is not running on this node \(.*nothing\.sock: No such file or directory\); tell your site's support\n$/,
  );
});

function writeConf(name: string, lines: string[], mode = 0o644): string {
  const path = join(dir, name);
  writeFileSync(path, lines.join('\n'), { mode });
  chmodSync(path, mode);
  return path;
}

test('without $SHIFTERD_SOCKET the launcher finds shifterd through shifterdSocket in udiRoot.conf', async (t) => {
  const conf = writeConf('udiRoot.conf', [
    '# site configuration',
    'siteEnv=A=1 \\',
    '  shifterdSocket=/continuation/of/siteEnv.sock',
    '  shifterdSocket = /overridden/by/the/next/line.sock',
    `shifterdSocket = ${daemon.socketPath}   `,
    'imagePath=/images',
  ]);
  const r = await runAs(user1, [join(nativeDir(), 'shifter'), 'id', '-u'], {
    env: { SHIFTERD_SOCKET: '', SHIFTER_UDIROOT_CONF: conf },
  });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `${user1.uid}\n`);
});

test('$SHIFTERD_SOCKET is used before udiRoot.conf', async (t) => {
  const conf = writeConf('elsewhere.conf', ['shifterdSocket=/nowhere/shifterd.sock']);
  const r = await runAs(user1, [join(nativeDir(), 'shifter'), 'id', '-u'], { env: { SHIFTER_UDIROOT_CONF: conf } });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `${user1.uid}\n`);
});

test('no udiRoot.conf or no shifterdSocket in it: the default socket; an unreadable one: one line', async (t) => {
  const defaultSocket =
    /^shifter: shifterd (is not running|cannot be reached) on this node \(\/run\/shifter\/shifterd\.sock: .*\); tell/;
  const noKey = writeConf('nokey.conf', ['imagePath=/images', '#shifterdSocket=/commented.sock', 'shifterdSocket=']);
  for (const conf of [join(dir, 'absent.conf'), noKey]) {
    const r = await runAs(user1, [join(nativeDir(), 'shifter'), 'true'], {
      env: { SHIFTERD_SOCKET: '', SHIFTER_UDIROOT_CONF: conf },
    });
    t.is(r.code, 1);
    t.regex(r.stderr, defaultSocket);
  }
  const secret = writeConf('root-only.conf', [`shifterdSocket=${daemon.socketPath}`], 0o600);
  const r = await runAs(user1, [join(nativeDir(), 'shifter'), 'true'], {
    env: { SHIFTERD_SOCKET: '', SHIFTER_UDIROOT_CONF: secret },
  });
  t.is(r.code, 1);
  t.is(r.stderr, `shifter: cannot read shifterdSocket from ${secret}: Permission denied\n`);
});

test("another user's namespaces are refused by the launcher and by the kernel", async (t) => {
  const r = await shifter(user2, [`--as=${user1.uid}`, 'id']);
  t.is(r.code, 1);
  t.is(r.stderr, 'shifter: check namespace fd: user namespace belongs to another user: Operation not permitted\n');
  const env1 = await environmentFor({ pid: 0, uid: user1.uid, gid: user1.gid, groups: [user1.gid, EXTRA_GROUP] });
  const direct = await runAs(user2, [attackTool, 'fds'], { stdioFds: [env1.userNsFd, env1.mntNsFd] });
  t.is(direct.stdout, 'setns user: EPERM\n');
});

test('the owner joining from outside cannot unmount, remount or reach the device', async (t) => {
  const env1 = await environmentFor({ pid: 0, uid: user1.uid, gid: user1.gid, groups: [user1.gid, EXTRA_GROUP] });
  const direct = await runAs(user1, [attackTool, 'fds'], { stdioFds: [env1.userNsFd, env1.mntNsFd] });
  t.is(
    direct.stdout,
    [
      'setns user: OK',
      'setns mnt: OK',
      'umount /etc/passwd: EINVAL',
      'umount /proc: EINVAL',
      'remount / rw: EPERM',
      'remount /bin suid: EPERM',
      'mount_setattr /home dev,suid: EPERM',
      'open /home/evildev: EACCES',
      '',
    ].join('\n'),
  );
  // The same through /proc/PID/ns of a running container process.
  const sleeper = spawn(
    'setpriv',
    [
      `--reuid=${user1.uid}`,
      `--regid=${user1.gid}`,
      '--clear-groups',
      '--',
      join(nativeDir(), 'shifter'),
      'sleep',
      '20',
    ],
    {
      env: { SHIFTERD_SOCKET: daemon.socketPath },
      stdio: 'ignore',
    },
  );
  try {
    let inside = false;
    for (let i = 0; i < 100 && !inside; i++) {
      await new Promise((r) => setTimeout(r, 20));
      inside =
        execFileSync('readlink', [`/proc/${sleeper.pid}/ns/mnt`], { encoding: 'utf8' }) !==
        execFileSync('readlink', ['/proc/self/ns/mnt'], { encoding: 'utf8' });
    }
    t.true(inside);
    const viaPid = await runAs(user1, [attackTool, 'pid', String(sleeper.pid)]);
    t.regex(
      viaPid.stdout,
      /^open user ns: OK\nopen mnt ns: OK\nsetns user: OK\nsetns mnt: OK\numount \/etc\/passwd: EINVAL\n/,
    );
    const attempts = viaPid.stdout.split('\n').filter((l) => l && !/^(open (user|mnt) ns|setns (user|mnt)):/.test(l));
    t.is(attempts.length, 6);
    t.deepEqual(
      attempts.filter((l) => l.endsWith(': OK')),
      [],
    );
  } finally {
    sleeper.kill('SIGKILL');
  }
});

test.serial('timing: environment creation and launch', async (t) => {
  const times: number[] = [];
  const helperTimes: number[] = [];
  for (let i = 0; i < 10; i++) {
    const env = await createEnvironment(
      specFor({ pid: 0, uid: user2.uid, gid: user2.gid, groups: [user2.gid] }, user2),
    );
    times.push(env.setupMs);
    helperTimes.push(env.helperMs);
    env.close();
  }
  helperTimes.sort((a, b) => a - b);
  await shifter(user1, ['true']);
  const launch = async (argv: string[]) => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) {
      const r = await runAs(user1, argv);
      t.is(r.code, 0, r.stderr);
    }
    return Number(process.hrtime.bigint() - start) / 1e6 / 20;
  };
  const viaShifter = await launch([join(nativeDir(), 'shifter'), 'true']);
  const plain = await launch(['/bin/true']);
  const median = times.sort((a, b) => a - b)[5];
  t.log(
    `createEnvironment median ${median.toFixed(2)} ms (min ${times[0].toFixed(2)}, max ${times[9].toFixed(2)}), from Node, through the helper server`,
  );
  t.log(
    `inside shifter-nshelper: median ${helperTimes[5].toFixed(2)} ms (min ${helperTimes[0].toFixed(2)}) for 9 mounts and files`,
  );
  t.true(helperTimes[0] > 0);
  t.log(
    `setpriv+shifter true: ${viaShifter.toFixed(2)} ms per launch; setpriv+/bin/true: ${plain.toFixed(2)} ms (spawned from Node)`,
  );
  t.true(median < 1000); // a sanity bound only: the machine is shared
});
