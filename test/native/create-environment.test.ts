/**
 * createEnvironment through shifter-nshelper on real namespaces, checked from inside with
 * nsenter (no launcher): where targets resolve, whose credentials open user volumes, what
 * propagation and recursion show, and which specs the helper refuses on its own. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attachImage,
  createEnvironment,
  type Environment,
  type EnvironmentSpec,
  type ImageMount,
} from '../../node-daemon/adapters/index.js';
import type { HelperFailure } from '../../node-daemon/adapters/helper-failure.js';
import { runHelper } from '../../node-daemon/adapters/helper-process.js';
import { ensureUser, runInside, type TestUser } from './environment-run.js';
import { buildTestImage } from './image-fixture.js';

let dir: string;
let image: ImageMount;
let user1: TestUser;
let privateDir: string;

test.before(async () => {
  user1 = ensureUser('shiftertest1');
  const user2 = ensureUser('shiftertest2');
  dir = mkdtempSync(join(tmpdir(), 'shifter-create-env-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'tmp'), { mode: 0o1777 });
  chmodSync(join(dir, 'tmp'), 0o1777);
  mkdirSync(join(dir, 'data'), { mode: 0o755 });
  for (const u of [user1, user2]) {
    mkdirSync(join(dir, 'data', u.name), { mode: 0o700 });
    writeFileSync(join(dir, 'data', u.name, 'owner'), `${u.name}\n`);
    chownSync(join(dir, 'data', u.name), u.uid, u.gid);
  }
  privateDir = join(dir, 'root-only');
  mkdirSync(privateDir, { mode: 0o700 });
  image = await attachImage(buildTestImage(dir, join(process.cwd(), 'test/native/fixtures')));
});

test.after.always(() => {
  image?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('image symlinks resolve inside the container: merged-/usr links work, nothing reaches the host', async (t) => {
  const marker = `shifter-evil-${process.pid}`;
  const base = { image, uid: user1.uid, gid: user1.gid, groups: [user1.gid], scaffoldDirs: ['/etc'] };
  const lib = join(dir, 'site-lib.so');
  writeFileSync(lib, 'site library\n');
  const env = await createEnvironment({
    ...base,
    mounts: [
      { kind: 'bind', source: lib, target: '/lib/libmarker.so', readOnly: true },
      { kind: 'bind', source: privateDir, target: `/evil/${marker}`, readOnly: true },
    ],
  });
  try {
    const r = await runInside(env, ['/bin/sh', '-c', `cat /usr/lib/libmarker.so; ls -d /etc/${marker}`]);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, `site library\n/etc/${marker}\n`);
  } finally {
    env.close();
  }
  t.false(existsSync(`/etc/${marker}`));
  const viaTmp = await t.throwsAsync(
    createEnvironment({
      ...base,
      mounts: [
        { kind: 'bind', source: join(dir, 'tmp'), target: '/tmp', readOnly: false },
        { kind: 'file', target: `/evil-tmp/${marker}`, content: 'x' },
      ],
    }),
  );
  t.is((viaTmp as Error & { code?: string }).code, 'UNSAFE_CONTENT');
  t.regex(
    viaTmp.message,
    /a symlink in the image leads out of the image; refused\): \/evil-tmp\/.*: Invalid cross-device link$/,
  );
  t.false(existsSync(join(dir, 'tmp', marker)));
  const user = await t.throwsAsync(
    createEnvironment({
      ...base,
      mounts: [
        {
          kind: 'bind',
          source: join(dir, 'data', user1.name),
          target: `/evil/${marker}`,
          readOnly: true,
          asUser: true,
        },
      ],
    }),
  );
  t.is((user as Error & { code?: string }).code, 'UNSAFE_CONTENT');
  t.regex(user.message, /a symlink is on the path; refused for user volumes/);
});

test("user volumes are opened with the user's credentials, never as root", async (t) => {
  const spec = (asUser: boolean): EnvironmentSpec => ({
    image,
    uid: user1.uid,
    gid: user1.gid,
    groups: [user1.gid],
    scaffoldDirs: [],
    mounts: [{ kind: 'bind', source: privateDir, target: '/data', readOnly: true, asUser }],
  });
  const err = await createEnvironment(spec(true)).then(
    () => null,
    (e: Error & { code?: string }) => e,
  );
  t.is(err?.code, 'PERMISSION_DENIED');
  t.regex(err!.message, /open volume source as the user: .*root-only: Permission denied/);
  // The same source without asUser is opened by root: the refusal above was the user's.
  const env = await createEnvironment(spec(false));
  t.true(env.userNsFd >= 0 && env.mntNsFd >= 0);
  env.close();
});

test("a user volume source through a /proc magic link is refused (it would name the root helper's own root or fds)", async (t) => {
  for (const source of ['/proc/self/root', '/dev/fd/0']) {
    const err = await createEnvironment({
      image,
      uid: user1.uid,
      gid: user1.gid,
      groups: [user1.gid],
      scaffoldDirs: [],
      mounts: [{ kind: 'bind', source, target: '/data', readOnly: true, asUser: true }],
    }).then(
      (env) => {
        env.close();
        return null;
      },
      (e: Error) => e,
    );
    t.truthy(err, `${source} was bound`);
    t.regex(err!.message, /open volume source as the user: .*Too many levels of symbolic links/);
  }
});

test('missing mount points are created on the scaffold, never in the image', async (t) => {
  const base = { image, uid: user1.uid, gid: user1.gid, groups: [user1.gid], scaffoldDirs: [] };
  const env = await createEnvironment({
    ...base,
    mounts: [{ kind: 'bind', source: join(dir, 'data'), target: '/opt/udiImage/site', readOnly: true }],
  });
  try {
    const r = await runInside(env, ['/bin/ls', '/opt/udiImage/site']);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'shiftertest1\nshiftertest2\n');
  } finally {
    env.close();
  }
  const err = await t.throwsAsync(createEnvironment({ ...base, mounts: [{ kind: 'tmpfs', target: '/bin/newdir' }] }));
  t.regex(
    err.message,
    /^shifter-nshelper: create mount point \(the parent is in the image: create it there or list the parent in scaffoldDirs\): \/bin\/newdir: Read-only file system$/,
  );
});

test('a slave volume receives host mounts made later, a private one does not', async (t) => {
  const shared = join(dir, 'shared');
  mkdirSync(join(shared, 'sub'), { recursive: true });
  execFileSync('mount', ['--bind', shared, shared]);
  try {
    execFileSync('mount', ['--make-shared', shared]);
    const base = { image, uid: user1.uid, gid: user1.gid, groups: [user1.gid], scaffoldDirs: [] };
    const slave = await createEnvironment({
      ...base,
      mounts: [
        { kind: 'bind', source: shared, target: '/shared', readOnly: true, propagation: 'slave' },
        { kind: 'proc', target: '/proc' },
      ],
    });
    const priv = await createEnvironment({
      ...base,
      mounts: [
        { kind: 'bind', source: shared, target: '/shared', readOnly: true },
        { kind: 'proc', target: '/proc' },
      ],
    });
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'later', join(shared, 'sub')]);
      const seen = async (env: Environment) => {
        const r = await runInside(env, ['/bin/cat', '/proc/self/mountinfo']);
        t.is(r.code, 0, r.stderr);
        return r.stdout.split('\n').some((l) => l.split(' ')[4] === '/shared/sub');
      };
      t.true(await seen(slave));
      t.false(await seen(priv));
    } finally {
      slave.close();
      priv.close();
    }
  } finally {
    execFileSync('umount', ['-R', shared]);
  }
});

test('a user volume cannot reveal what a host mount covers below its source', async (t) => {
  const vol = join(dir, 'covered');
  mkdirSync(join(vol, 'sub'), { recursive: true });
  writeFileSync(join(vol, 'sub', 'under-the-mount'), 'hidden by the host mount\n');
  chownSync(vol, user1.uid, user1.gid);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'cover', join(vol, 'sub')]);
  try {
    writeFileSync(join(vol, 'sub', 'on-the-mount'), 'what the host shows\n');
    const env = await createEnvironment({
      image,
      uid: user1.uid,
      gid: user1.gid,
      groups: [user1.gid],
      scaffoldDirs: [],
      // Even a spec that asks for a single-level bind of a user volume gets the whole subtree.
      mounts: [
        { kind: 'bind', source: vol, target: '/data', readOnly: true, asUser: true, recursive: false, nodev: false },
        { kind: 'proc', target: '/proc' },
      ],
    });
    try {
      const r = await runInside(env, ['/bin/ls', '/data/sub'], user1);
      t.is(r.code, 0, r.stderr);
      t.deepEqual(r.stdout.trim().split('\n'), ['on-the-mount'], 'the host mount is there, what it covers is not');
      const opts = await runInside(env, ['/bin/cat', '/proc/self/mountinfo'], user1);
      const sub = opts.stdout.split('\n').find((l) => l.split(' ')[4] === '/data/sub');
      t.truthy(sub, opts.stdout);
      t.regex(sub!.split(' ')[5], /nosuid/);
      t.regex(sub!.split(' ')[5], /nodev/);
    } finally {
      env.close();
    }
  } finally {
    execFileSync('umount', [join(vol, 'sub')]);
  }
});

test('the helper itself refuses a spec that breaks its invariants, whatever shifterd sent', async (t) => {
  const send = (tokens: string[]) =>
    runHelper('create-env', Buffer.from(tokens.map((x) => `${x}\0`).join('')), [image.fd], 2);
  const user = ['uid', String(user1.uid), 'gid', String(user1.gid), 'groups', String(user1.gid)];
  const cases: [string[], string][] = [
    [
      ['uid', '0', 'gid', '0', 'groups', '', 'end'],
      'spec: refusing to create an environment for uid 0 or gid 0: Operation not permitted',
    ],
    [
      ['uid', String(user1.uid), 'gid', String(user1.gid), 'groups', `0,${user1.gid}`, 'end'],
      'spec: refusing group 0: Operation not permitted',
    ],
    [
      [...user, 'bind', '/tmp', '/a/../etc', 'ro', 'end'],
      "spec: target must be an absolute path without '..' and not '/': /a/../etc",
    ],
    [[...user, 'bind', 'tmp', '/data', 'ro', 'end'], 'spec: bind source must be absolute: tmp'],
    [[...user, 'bind', '/tmp', '/data', 'ro,setuid', 'end'], 'spec: unknown bind flag: setuid'],
    [
      [
        ...user,
        'cache',
        '/c',
        '1048576',
        '0',
        'btrfs',
        '/tmp',
        '/sbin/mkfs',
        String(user1.uid),
        String(user1.gid),
        'end',
      ],
      'spec: perNodeCache fs type must be xfs or ext4: btrfs',
    ],
    [
      [...user, 'cache', '/c', '1048576', '0', 'xfs', '/tmp', '/sbin/mkfs.xfs', '4242', '4242', 'end'],
      "spec: a perNodeCache must belong to the environment's user: /c: Operation not permitted",
    ],
    [[...user, 'hook', 'sitePreMountHook', 'pre.sh', 'end'], 'spec: hook script must be an absolute path: pre.sh'],
    [[...user], 'spec: truncated (no "end"): Invalid argument'],
  ];
  for (const [tokens, message] of cases) {
    const err = await t.throwsAsync(send(tokens));
    t.is(err.message, `shifter-nshelper: ${message}`);
    t.is((err as Error & { code?: string }).code, 'INTERNAL', message);
    t.like((err as Error & { cause?: HelperFailure }).cause, { failureClass: 'spec' });
  }
});
