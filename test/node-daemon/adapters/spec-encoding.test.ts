import test from 'ava';
import type { EnvironmentSpec, ImageMount } from '../../../node-daemon/adapters/index.js';
import { encodeSpec } from '../../../node-daemon/adapters/spec-encoding.js';

const image: ImageMount = { kind: 'squashfs', path: '/images/x.sqfs', fd: 9, loopDevice: '/dev/loop9', release() {} };
const base: EnvironmentSpec = {
  image,
  uid: 1001,
  gid: 1001,
  groups: [100, 0, 1001],
  scaffoldDirs: ['/etc/'],
  mounts: [],
};

const tokens = (spec: EnvironmentSpec) => encodeSpec(spec).toString('utf8').split('\0').slice(0, -1);

test('identity, scaffold dirs and every mount kind become helper tokens', (t) => {
  const out = tokens({
    ...base,
    mounts: [
      { kind: 'bind', source: '/dev', target: '/dev', readOnly: false, recursive: true, nodev: false },
      {
        kind: 'bind',
        source: '/home/u/data',
        target: '/data',
        readOnly: true,
        asUser: true,
        propagation: 'slave',
        noexec: true,
      },
      { kind: 'file', target: '/etc/passwd', content: 'u:x:1001:1001::/:/bin/sh\n' },
      { kind: 'symlink', target: '/etc/mtab', linkTo: '/proc/mounts' },
      { kind: 'dir', target: '/scratch', mode: 0o700 },
      { kind: 'tmpfs', target: '/run', sizeBytes: 1024, noexec: true },
      { kind: 'proc', target: '/proc' },
    ],
  });
  t.deepEqual(out, [
    'uid',
    '1001',
    'gid',
    '1001',
    'groups',
    '100,1001',
    'scaffold',
    '/etc',
    'bind',
    '/dev',
    '/dev',
    'rec,dev,private',
    'bind',
    '/home/u/data',
    '/data',
    'ro,noexec,slave,user',
    'file',
    '/etc/passwd',
    '644',
    'u:x:1001:1001::/:/bin/sh\n',
    'symlink',
    '/etc/mtab',
    '/proc/mounts',
    'dir',
    '/scratch',
    '700',
    'tmpfs',
    '/run',
    '1777',
    '1024',
    'noexec',
    'proc',
    '/proc',
    'end',
  ]);
});

test('the primary gid is always among the groups', (t) => {
  t.deepEqual(tokens({ ...base, groups: [] }).slice(4, 6), ['groups', '1001']);
});

test('bad specs are refused with a message naming the problem', (t) => {
  const bad = (spec: Partial<EnvironmentSpec>) => t.throws(() => encodeSpec({ ...base, ...spec }))?.message;
  t.regex(bad({ uid: 0 }), /uid 0 is not a valid non-root id/);
  t.regex(bad({ gid: 0 }), /gid 0 is not a valid non-root id/);
  t.regex(
    bad({ mounts: [{ kind: 'bind', source: 'relative', target: '/x', readOnly: true }] }),
    /bind source "relative" must be an absolute path/,
  );
  t.regex(
    bad({ mounts: [{ kind: 'bind', source: '/a', target: '/x/../etc', readOnly: true }] }),
    /mount target "\/x\/\.\.\/etc" must be an absolute path without "\.\."/,
  );
  t.regex(bad({ mounts: [{ kind: 'proc', target: '/' }] }), /cannot be "\/"/);
  t.regex(bad({ mounts: [{ kind: 'file', target: '/etc/x', content: 'a\0b' }] }), /must not contain NUL/);
  t.regex(bad({ groups: Array.from({ length: 400 }, (_, i) => i + 1) }), /at most 340/);
});

test('the site hooks bracket the site mounts, or sit before the user mounts when there is none', (t) => {
  const hooks = { preMount: '/etc/shifter/pre.sh', postMount: '/etc/shifter/post.sh' };
  const kinds = (spec: EnvironmentSpec) =>
    tokens(spec).filter(
      (x) => ['proc', 'hook', 'dir'].includes(x) || x.startsWith('/d') || x.startsWith('/etc/shifter'),
    );
  t.deepEqual(
    kinds({
      ...base,
      hooks,
      mounts: [
        { kind: 'proc', target: '/proc' },
        { kind: 'dir', target: '/d1', phase: 'site' },
        { kind: 'dir', target: '/d2', phase: 'site' },
        { kind: 'dir', target: '/d3', phase: 'user' },
      ],
    }),
    ['proc', 'hook', '/etc/shifter/pre.sh', 'dir', '/d1', 'dir', '/d2', 'hook', '/etc/shifter/post.sh', 'dir', '/d3'],
  );
  t.deepEqual(
    kinds({
      ...base,
      hooks,
      mounts: [
        { kind: 'proc', target: '/proc' },
        { kind: 'dir', target: '/d3', phase: 'user' },
      ],
    }),
    ['proc', 'hook', '/etc/shifter/pre.sh', 'hook', '/etc/shifter/post.sh', 'dir', '/d3'],
  );
  t.deepEqual(
    kinds({ ...base, hooks: { postMount: '/etc/shifter/post.sh' }, mounts: [{ kind: 'proc', target: '/proc' }] }),
    ['proc', 'hook', '/etc/shifter/post.sh'],
  );
  t.deepEqual(tokens({ ...base, hooks }).slice(-7), [
    'hook',
    'sitePreMountHook',
    '/etc/shifter/pre.sh',
    'hook',
    'sitePostMountHook',
    '/etc/shifter/post.sh',
    'end',
  ]);
  const split = t.throws(() =>
    encodeSpec({
      ...base,
      hooks,
      mounts: [
        { kind: 'dir', target: '/d1', phase: 'site' },
        { kind: 'proc', target: '/proc' },
        { kind: 'dir', target: '/d2', phase: 'site' },
      ],
    }),
  );
  t.regex(split.message, /must be contiguous/);
  t.regex(
    t.throws(() => encodeSpec({ ...base, hooks: { preMount: 'pre.sh' } })).message,
    /sitePreMountHook script "pre.sh" must be an absolute path/,
  );
});

test('perNodeCache: tokens, and the site policy (size limit, allowed types, block size) is enforced', (t) => {
  const cache = {
    kind: 'perNodeCache',
    target: '/cache',
    sizeBytes: 2 ** 30,
    fsType: 'xfs',
    backingDir: '/scratch',
    uid: 1001,
    gid: 1001,
  } as const;
  t.deepEqual(tokens({ ...base, mounts: [cache] }).slice(8, -1), [
    'cache',
    '/cache',
    '1073741824',
    '0',
    'xfs',
    '/scratch',
    '/usr/sbin/mkfs.xfs',
    '1001',
    '1001',
  ]);
  t.deepEqual(
    tokens({
      ...base,
      mounts: [{ ...cache, fsType: 'ext4', blockSize: 4096 }],
      perNodeCachePolicy: { allowedFsTypes: ['ext4'], mkfsExt4Path: '/sbin/mkfs.ext4' },
    }).slice(8, -1),
    ['cache', '/cache', '1073741824', '4096', 'ext4', '/scratch', '/sbin/mkfs.ext4', '1001', '1001'],
  );
  const bad = (spec: Partial<EnvironmentSpec>) => t.throws(() => encodeSpec({ ...base, ...spec }))?.message;
  t.is(
    bad({ mounts: [cache], perNodeCachePolicy: { sizeLimitBytes: 2 ** 29 } }),
    "perNodeCache on /cache: size 1G is over this site's limit of 512M (perNodeCacheSizeLimit): ask for less",
  );
  t.is(
    bad({ mounts: [{ ...cache, fsType: 'ext4' }] }),
    'perNodeCache on /cache: filesystem "ext4" is not allowed on this site (perNodeCacheAllowedFsType: xfs): use fs=xfs',
  );
  t.regex(
    bad({ mounts: [{ ...cache, blockSize: 3000 }] }),
    /block size 3000 must be a power of two from 512 to 65536 for xfs/,
  );
  t.regex(bad({ mounts: [{ ...cache, sizeBytes: 0 }] }), /size 0 is not a positive number of bytes/);
  t.regex(bad({ mounts: [{ ...cache, uid: 1002 }] }), /owner 1002:1001 is not the environment's user 1001:1001/);
  t.regex(bad({ mounts: [{ ...cache, backingDir: 'tmp' }] }), /perNodeCachePath "tmp" must be an absolute path/);
});
