import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseUdiRootConf } from '../../common/config/udiroot-conf.js';
import { parseVolumeTexts } from '../../node-daemon/command/volumes.js';
import { selectModules } from '../../node-daemon/command/modules.js';
import { buildEnvironmentSpec, compileSite } from '../../node-daemon/spec-builder.js';
import type { ImageMount } from '../../node-daemon/adapters/image-mount.js';
import type { BindMount } from '../../node-daemon/adapters/environment-spec.js';

const image: ImageMount = {
  kind: 'squashfs',
  path: '/images/x.squashfs',
  fd: 99,
  loopDevice: '/dev/loop9',
  release() {},
};

function site(text: string) {
  return compileSite(parseUdiRootConf(`imagePath=/images\n${text}`, 'udiRoot.conf').config);
}

function specInput(dirs: string[], text = '', volumes: string[] = []) {
  return {
    site: site(text),
    image,
    layout: { dirs: new Set(dirs) },
    uid: 1000,
    gid: 100,
    groups: [5, 100],
    etc: [],
    modules: [],
    userVolumes: parseVolumeTexts(volumes, 'user'),
  };
}

function spec(text: string, dirs: string[], volumes: string[] = []) {
  return buildEnvironmentSpec(specInput(dirs, text, volumes));
}

test('identity, proc, /dev with devices, /tmp, and the user volume opened as the user', (t) => {
  const s = spec('', ['/etc', '/var', '/var/tmp'], ['/scratch/run1:/data:ro']);
  t.is(s.uid, 1000);
  t.is(s.gid, 100);
  t.deepEqual(s.groups, [100, 5]);
  t.deepEqual(s.scaffoldDirs, ['/etc']);
  const byTarget = new Map(s.mounts.map((m) => [m.target, m]));
  t.is(byTarget.get('/proc')?.kind, 'proc');
  t.like(byTarget.get('/dev'), { source: '/dev', recursive: true, nodev: false, nosuid: true });
  t.like(byTarget.get('/sys'), { readOnly: true });
  t.like(byTarget.get('/data'), {
    source: '/scratch/run1',
    readOnly: true,
    asUser: true,
    nosuid: true,
    nodev: true,
    propagation: 'private',
  });
  t.is(s.mounts[s.mounts.length - 1].target, '/data', 'user volumes come last');
});

test('missing /etc and /var are created; an image /var without tmp is rebuilt on the scaffold', (t) => {
  const bare = spec('', []);
  t.true(bare.mounts.some((m) => m.kind === 'dir' && m.target === '/etc'));
  t.true(bare.mounts.some((m) => m.kind === 'dir' && m.target === '/var'));
  const varOnly = spec('', ['/etc', '/var']);
  t.deepEqual(varOnly.scaffoldDirs, ['/etc', '/var']);
  t.false(varOnly.mounts.some((m) => m.kind === 'dir'));
});

test('a job hostsfile is written as /var/hostsfile, making or rebuilding /var; other environments have none', (t) => {
  const withHosts = (dirs: string[]) => buildEnvironmentSpec({ ...specInput(dirs), hostsfile: 'n1\nn1\n' });
  for (const dirs of [[], ['/etc', '/var'], ['/etc', '/var', '/var/tmp']]) {
    const s = withHosts(dirs);
    t.like(
      s.mounts.find((m) => m.target === '/var/hostsfile'),
      { kind: 'file', content: 'n1\nn1\n', mode: 0o644 },
      dirs.join(','),
    );
    const varDirs = s.mounts.filter((m) => m.kind === 'dir' && m.target === '/var').length;
    t.is(varDirs + (s.scaffoldDirs.includes('/var') ? 1 : 0), 1, `/var made or rebuilt once: ${dirs.join(',')}`);
  }
  t.false(spec('', ['/etc', '/var', '/var/tmp']).mounts.some((m) => m.target === '/var/hostsfile'));
});

test('site hooks bracket the siteFs mounts (phase site); user volumes are phase user', (t) => {
  const s = spec(
    'siteFs=/global:/global\nsitePreMountHook=/etc/shifter/pre.sh\nsitePostMountHook=/etc/shifter/post.sh',
    ['/etc'],
    ['/a:/data'],
  );
  t.deepEqual(s.hooks, { preMount: '/etc/shifter/pre.sh', postMount: '/etc/shifter/post.sh' });
  t.deepEqual(
    s.mounts.filter((m) => m.phase !== undefined).map((m) => [m.target, m.phase]),
    [
      ['/global', 'site'],
      ['/data', 'user'],
    ],
  );
  t.is(spec('', ['/etc']).hooks, undefined);
});

test('siteFs flags and the site propagation style', (t) => {
  const s = spec('siteFs=/global:/global:rec;/home\nmountPropagationStyle=slave', ['/etc', '/var', '/var/tmp']);
  const global = s.mounts.find((m) => m.target === '/global') as BindMount;
  t.like(global, { recursive: true, propagation: 'slave', asUser: false, readOnly: false });
  t.like(
    s.mounts.find((m) => m.target === '/home'),
    { source: '/home' },
  );
});

test('optUdiImage is bound read-only at /opt/udiImage, scaffolding an image /opt', (t) => {
  const s = spec('optUdiImage=/usr/lib/shifter/opt/udiImage', ['/etc', '/opt', '/var', '/var/tmp']);
  t.like(
    s.mounts.find((m) => m.target === '/opt/udiImage'),
    {
      source: '/usr/lib/shifter/opt/udiImage',
      readOnly: true,
    },
  );
  t.deepEqual(s.scaffoldDirs, ['/etc', '/opt']);
});

test('module siteFs and copyPath', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'spec-'));
  try {
    const conf = parseUdiRootConf(
      `imagePath=/i\nmodule_mpich_siteFs=/opt/cray:/opt/cray:ro\nmodule_mpich_copyPath=${dir}\nmodule_gpu_siteFs=/usr/lib/nvidia:/nvidia\nmodule_gpu_conflict=mpich\n`,
      'c',
    ).config;
    const compiled = compileSite(conf);
    const chosen = selectModules({ kind: 'list', names: ['mpich'] }, [], conf.modules).map((m) =>
      compiled.modules.get(m.name)!,
    );
    const s = buildEnvironmentSpec({
      site: compiled,
      image,
      layout: { dirs: new Set(['/etc']) },
      uid: 1,
      gid: 1,
      groups: [],
      etc: [],
      modules: chosen,
      userVolumes: [],
    });
    t.like(
      s.mounts.find((m) => m.target === '/opt/cray'),
      { readOnly: true },
    );
    t.like(
      s.mounts.find((m) => m.kind === 'bind' && m.target === '/opt/udiImage/modules/mpich'),
      {
        source: dir,
        readOnly: true,
      },
    );
    t.true(
      s.mounts.some((m) => m.kind === 'dir' && m.target === '/opt'),
      'the image has no /opt',
    );
    t.false(s.mounts.some((m) => m.target === '/nvidia'));
    t.throws(() => selectModules({ kind: 'list', names: ['mpich', 'gpu'] }, [], conf.modules), { message: /conflict/ });
    t.throws(() => selectModules({ kind: 'list', names: ['nope'] }, [], conf.modules), {
      message: /not configured.*available: mpich, gpu/,
    });
    t.deepEqual(
      selectModules({ kind: 'default' }, ['gpu'], conf.modules).map((m) => m.name),
      ['gpu'],
    );
    t.deepEqual(selectModules({ kind: 'none' }, ['gpu'], conf.modules), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad settings are refused at config load, not skipped', (t) => {
  t.throws(() => site('sitePreMountHook=pre.sh'), { message: /sitePreMountHook=pre.sh must be an absolute path/ });
  t.throws(() => site('module_x_roothook=x.sh'), { message: /module_x_roothook=x.sh must be an absolute path/ });
  t.throws(() => site('module_x_userhook=hooks/x.sh'), {
    message: /module_x_userhook=hooks\/x.sh must be an absolute/,
  });
  t.throws(() => site('module_x_devices=/dev/dri/card0'), { message: /module_x_devices: '\/dev\/dri\/card0' is not/ });
  t.throws(() => site('module_x_devices=nvidia0'), { message: /module_x_devices: 'nvidia0' is not \/dev\/<name>/ });
  t.throws(() => site('siteFs=relative:/x'), { message: /udiRoot.conf: siteFs: .*not absolute/ });
  t.throws(() => site('perNodeCacheSizeLimit=lots'), { message: /perNodeCacheSizeLimit=lots is not a size/ });
  t.throws(() => site('perNodeCacheAllowedFsType=btrfs'), { message: /only xfs and ext4/ });
  t.throws(() => site('siteFs=/x:/scratch:perNodeCache=size=1G'), { message: /perNodeCachePath is not set/ });
});

test('perNodeCache volumes: refused where the site has no perNodeCachePath, else a cache for this user under the site policy', (t) => {
  t.throws(() => spec('', ['/etc'], ['/a:/cache:perNodeCache=size=1G']), {
    message: /not enabled on this system \(perNodeCachePath/,
  });
  const s = spec(
    'perNodeCachePath=/local/pnc\nperNodeCacheSizeLimit=100G\nperNodeCacheAllowedFsType=xfs ext4\nmkfsXfsPath=/sbin/mkfs.xfs',
    ['/etc'],
    ['/a:/cache:perNodeCache=size=1G,bs=4k,fs=ext4'],
  );
  t.deepEqual(
    s.mounts.find((m) => m.target === '/cache'),
    {
      kind: 'perNodeCache',
      target: '/cache',
      sizeBytes: 1024 ** 3,
      blockSize: 4096,
      fsType: 'ext4',
      backingDir: '/local/pnc',
      uid: 1000,
      gid: 100,
      phase: 'user',
    },
  );
  t.deepEqual(s.perNodeCachePolicy, {
    sizeLimitBytes: 100 * 1024 ** 3,
    allowedFsTypes: ['xfs', 'ext4'],
    mkfsXfsPath: '/sbin/mkfs.xfs',
  });
});

function moduleSpec(text: string, names: string[], volumes: string[] = []) {
  const input = specInput(['/etc', '/dev'], text, volumes);
  const conf = parseUdiRootConf(`imagePath=/images\n${text}`, 'udiRoot.conf').config;
  const modules = selectModules({ kind: 'list', names }, [], conf.modules).map((m) => input.site.modules.get(m.name)!);
  return { input: { ...input, modules }, conf };
}

test('module roothooks go to the helper in module order with moduleHookTimeout; userhooks stay for the launch', (t) => {
  const text = [
    'module_b_roothook=/hooks/b.sh',
    'module_a_roothook=/hooks/a.sh',
    'module_a_userhook=/opt/udiImage/modules/a/hook.sh',
    'moduleHookTimeout=7',
  ].join('\n');
  const { input } = moduleSpec(text, ['a', 'b'], ['/scratch:/data']);
  const s = buildEnvironmentSpec(input);
  t.deepEqual(s.rootHooks, [
    { module: 'a', script: '/hooks/a.sh', timeoutSeconds: 7 },
    { module: 'b', script: '/hooks/b.sh', timeoutSeconds: 7 },
  ]);
  t.is(buildEnvironmentSpec(moduleSpec(text, []).input).rootHooks, undefined);
  t.is(site('').hookTimeoutSeconds, 30, 'the default limit');
});

test('a module with devices gives the launch its own /dev: host entries but those it claims, then its devices', (t) => {
  const { input } = moduleSpec('module_gpu_devices=/dev/nvidiactl;/dev/nvidia*', ['gpu']);
  const s = buildEnvironmentSpec({
    ...input,
    devices: {
      host: [
        { name: 'fd', type: 'symlink', linkTo: '/proc/self/fd' },
        { name: 'null', type: 'char' },
        { name: 'nvidia0', type: 'char' },
        { name: 'pts', type: 'dir' },
        { name: 'sda', type: 'block' },
        { name: 'shm', type: 'dir' },
      ],
      modules: [{ module: 'gpu', patterns: ['/dev/nvidiactl', '/dev/nvidia*'] }],
      names: ['nvidia1', 'nvidiactl'],
    },
  });
  t.true(s.scaffoldDirs.includes('/dev'));
  const dev = s.mounts.filter((m) => m.target.startsWith('/dev'));
  t.deepEqual(dev, [
    { kind: 'symlink', target: '/dev/fd', linkTo: '/proc/self/fd' },
    { kind: 'bind', source: '/dev/null', target: '/dev/null', readOnly: false, nodev: false },
    { kind: 'bind', source: '/dev/pts', target: '/dev/pts', readOnly: false, recursive: true, nodev: false },
    { kind: 'bind', source: '/dev/shm', target: '/dev/shm', readOnly: false, recursive: true, nodev: true },
    { kind: 'bind', source: '/dev/nvidia1', target: '/dev/nvidia1', readOnly: false, nodev: false },
    { kind: 'bind', source: '/dev/nvidiactl', target: '/dev/nvidiactl', readOnly: false, nodev: false },
  ]);
  const plain = buildEnvironmentSpec(moduleSpec('module_gpu_devices=/dev/nvidiactl', []).input);
  t.deepEqual(
    plain.mounts.filter((m) => m.target.startsWith('/dev')).map((m) => m.target),
    ['/dev'],
    'without device modules the host /dev is bound whole, as upstream',
  );
});
