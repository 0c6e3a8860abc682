/**
 * End to end as a user sees it: the real launcher (native/build/shifter) run as an
 * unprivileged user against a real shifterd, real namespaces, a real squashfs image.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { chmodSync, chownSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EXTRA_GID, ShifterdFixture, ensureTestUser } from './runtime-fixture.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();

test.before(async () => {
  mkdirSync(join(fx.dir, 'tools'));
  writeFileSync(join(fx.dir, 'tools', 'tool.txt'), 'module tool\n', { mode: 0o644 });
  const pre = join(fx.dir, 'pre-hook.sh');
  const post = join(fx.dir, 'post-hook.sh');
  writeFileSync(pre, 'test -e ./site/site-file && echo mounted > ./etc/pre-hook || echo not-yet > ./etc/pre-hook\n', {
    mode: 0o755,
  });
  writeFileSync(
    post,
    'test -e ./site/site-file && echo mounted > ./etc/post-hook || echo missing > ./etc/post-hook\n',
    { mode: 0o755 },
  );
  mkdirSync(join(fx.dir, 'pnc'), { mode: 0o700 });
  fx.writeConfig([
    'siteEnv=SHIFTER_RUNTIME=1',
    `module_tools_siteFs=${join(fx.dir, 'tools')}:/tools:ro`,
    'module_tools_siteEnv=TOOLS=on',
    `sitePreMountHook=${pre}`,
    `sitePostMountHook=${post}`,
    `perNodeCachePath=${join(fx.dir, 'pnc')}`,
    'perNodeCacheSizeLimit=1G',
    'perNodeCacheAllowedFsType=ext4',
  ]);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
});

test('identity comes from the kernel: uid, gid, groups, passwd entry', async (t) => {
  const r = await fx.run([
    `--image=${fx.images.bare.name}`,
    'sh',
    '-c',
    'id -u; id -g; id -G; grep "^shiftertest1:" /etc/passwd',
  ]);
  t.is(r.code, 0, r.stderr);
  const [uid, gid, groups, passwd] = r.stdout.trim().split('\n');
  t.is(Number(uid), user.uid);
  t.is(Number(gid), user.gid);
  t.deepEqual(groups.split(' ').map(Number).sort(), [user.gid, EXTRA_GID].sort());
  t.regex(passwd, new RegExp(`^shiftertest1:x:${user.uid}:${user.gid}:`));
});

test('--volume shows the host directory at /data, read-write or ro', async (t) => {
  const vol = join(fx.dir, 'vol-rw');
  mkdirSync(vol);
  chownSync(vol, user.uid, user.gid);
  writeFileSync(join(vol, 'input.txt'), 'hello from the host\n');
  const r = await fx.run([
    `--image=${fx.images.bare.name}`,
    `--volume=${vol}:/data`,
    'sh',
    '-c',
    'cat /data/input.txt; echo written > /data/out.txt',
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'hello from the host\n');
  t.is(readFileSync(join(vol, 'out.txt'), 'utf8'), 'written\n');
  const ro = await fx.run([
    `--image=${fx.images.bare.name}`,
    `-V`,
    `${vol}:/data:ro`,
    'sh',
    '-c',
    'cat /data/input.txt && touch /data/nope',
  ]);
  t.is(ro.stdout, 'hello from the host\n');
  t.not(ro.code, 0);
  t.regex(ro.stderr, /Read-only file system/);
});

test('a volume source the user cannot reach is refused (opened as the user)', async (t) => {
  const secret = join(fx.dir, 'root-only');
  mkdirSync(secret, { mode: 0o700 });
  chmodSync(secret, 0o700);
  const r = await fx.run([`--image=${fx.images.bare.name}`, `--volume=${secret}:/data`, 'true']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^shifter: .*root-only.*Permission denied/);
  t.is(r.stderr.trim().split('\n').length, 1);
});

test('siteFs is mounted, and the site controls /etc', async (t) => {
  const r = await fx.run([
    `--image=${fx.images.bare.name}`,
    'sh',
    '-c',
    'cat /site/site-file; cat /etc/image-release; test -L /etc/mtab && echo mtab-link',
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'from the site\ntest image\nmtab-link\n');
  const bad = await fx.run([`--image=${fx.images.bare.name}`, `--volume=${fx.dir}:/etc`, 'true']);
  t.is(bad.code, 1);
  t.regex(bad.stderr, /would hide \/etc/);
});

test('stdin, stdout and exit codes pass through', async (t) => {
  const r = await fx.run([`--image=${fx.images.bare.name}`, 'sh', '-c', 'read x; echo "got:$x"; exit 3'], {
    input: 'ping\n',
  });
  t.is(r.code, 3);
  t.is(r.stdout, 'got:ping\n');
});

test('127 for a missing command, 126 for a non-executable file', async (t) => {
  const missing = await fx.run([`--image=${fx.images.bare.name}`, 'no-such-command']);
  t.is(missing.code, 127);
  t.regex(missing.stderr, /no-such-command: command not found/);
  const noexec = await fx.run([`--image=${fx.images.full.name}`, '/app/noexec.sh']);
  t.is(noexec.code, 126);
  t.regex(noexec.stderr, /noexec\.sh/);
});

test('ENTRYPOINT and CMD semantics', async (t) => {
  const def = await fx.run([`--image=${fx.images.full.name}`]);
  t.is(def.stdout, 'entry:default-cmd\n', 'no args: ENTRYPOINT + CMD');
  const args = await fx.run([`--image=${fx.images.full.name}`, 'echo', 'plain']);
  t.is(args.stdout, 'plain\n', 'args run as given');
  const entryArgs = await fx.run([`--image=${fx.images.full.name}`, '--entrypoint', 'a', 'b']);
  t.is(entryArgs.stdout, 'entry:a b\n', '--entrypoint: ENTRYPOINT + args');
  const explicit = await fx.run([`--image=${fx.images.full.name}`, '--entrypoint=/bin/echo', 'x']);
  t.is(explicit.stdout, 'x\n');
  const cmdOnly = await fx.run([`--image=${fx.images.cmdOnly.name}`]);
  t.is(cmdOnly.stdout, 'cmd-only\n', 'CMD runs without --entrypoint');
  const shell = await fx.run([`--image=${fx.images.bare.name}`], { input: 'echo from-default-shell\n' });
  t.is(shell.stdout, 'from-default-shell\n', 'nothing: /bin/sh');
  const noEntry = await fx.run([`--image=${fx.images.bare.name}`, '--entrypoint']);
  t.is(noEntry.code, 1);
  t.regex(noEntry.stderr, /has no ENTRYPOINT/);
});

test('WORKDIR: host cwd by default, image WORKDIR with bare --workdir, explicit dir, fallback to /', async (t) => {
  t.is((await fx.run([`--image=${fx.images.full.name}`, 'pwd'], { cwd: '/tmp' })).stdout, '/tmp\n');
  t.is((await fx.run([`--image=${fx.images.full.name}`, '--workdir', 'pwd'])).stdout, '/app\n');
  t.is((await fx.run([`--image=${fx.images.full.name}`, '--workdir=/bin', 'pwd'])).stdout, '/bin\n');
  // /usr/share exists on the host but not in the image.
  const missing = await fx.run([`--image=${fx.images.full.name}`, 'pwd'], { cwd: '/usr/share' });
  t.is(missing.stdout, '/\n');
  t.regex(missing.stderr, /cannot chdir/);
});

test('environment: caller env, SHIFTER_IMAGE(REQUEST), image ENV, --env, --env-file, siteEnv, -E', async (t) => {
  const envFile = join(fx.dir, 'vars.env');
  writeFileSync(envFile, '# comment\nFROMFILE=file\nBOTH=file\n', { mode: 0o644 });
  const r = await fx.run([`--image=${fx.images.full.name}`, '-e', 'BOTH=cli', `--env-file=${envFile}`, 'env'], {
    env: { CALLER: 'yes', IMGVAR: 'caller' },
  });
  t.is(r.code, 0, r.stderr);
  const env = new Map(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const),
  );
  t.is(env.get('CALLER'), 'yes');
  t.is(env.get('IMGVAR'), 'from-image');
  t.is(env.get('FROMFILE'), 'file');
  t.is(env.get('BOTH'), 'cli');
  t.is(env.get('SHIFTER_IMAGE'), fx.images.full.id);
  t.is(env.get('SHIFTER_IMAGEREQUEST'), fx.images.full.name);
  t.is(env.get('SHIFTER_RUNTIME'), '1');
  t.is(env.get('PATH'), '/usr/bin:/bin');
  const cleared = await fx.run([`--image=${fx.images.full.name}`, '-E', 'env'], { env: { CALLER: 'yes' } });
  t.false(cleared.stdout.includes('CALLER='));
  t.true(cleared.stdout.includes('IMGVAR=from-image'));
});

test("--env-file is read with the caller's permissions", async (t) => {
  const secret = join(fx.dir, 'secret.env');
  writeFileSync(secret, 'TOKEN=root-only\n', { mode: 0o600 });
  chmodSync(secret, 0o600);
  const r = await fx.run([`--image=${fx.images.bare.name}`, `--env-file=${secret}`, 'env']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^shifter: --env-file: cannot read .*Permission denied/);
  t.false(r.stdout.includes('root-only'));
});

test('SHIFTER_IMAGETYPE + SHIFTER_IMAGE select the image without --image', async (t) => {
  const r = await fx.run(['sh', '-c', 'echo $SHIFTER_IMAGE'], {
    env: { SHIFTER_IMAGETYPE: 'id', SHIFTER_IMAGE: fx.images.bare.id },
  });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), fx.images.bare.id);
});

test('clear one-line errors with exit 1; --help prints the usage', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--gpu', 'ls'], /unknown option '--gpu'/],
    [['ls'], /no image given/],
    [[`--image=id:${'0'.repeat(64)}`, 'ls'], /is not on this system.*shifterimg pull/],
    [[`--image=${fx.images.private.name}`, 'ls'], /permission denied to image/],
    [[`--image=${fx.images.bare.name}`, '--volume=relative:/data', 'ls'], /not absolute/],
    [[`--image=${fx.images.bare.name}`, '-m', 'gpu', 'ls'], /module 'gpu' is not configured/],
  ];
  for (const [args, re] of cases) {
    const r = await fx.run(args);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, re);
    t.is(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
    t.notRegex(r.stderr, /\bat .*\.js:\d+/, 'no stack trace');
  }
  const help = await fx.run(['--help']);
  t.is(help.code, 0, 'asking for help is not an error');
  t.regex(help.stdout, /Usage: shifter/);
  t.is(help.stderr, '');
});

test('mounts are locked: the user cannot unmount the site /etc/passwd or the volume', async (t) => {
  const r = await fx.run([
    `--image=${fx.images.bare.name}`,
    'sh',
    '-c',
    'umount /etc/passwd; umount /site; cat /site/site-file',
  ]);
  t.is(r.stdout, 'from the site\n');
});

test('the second launch of the same environment reuses it', async (t) => {
  const first = await fx.run([`--image=${fx.images.cmdOnly.name}`, '-v', 'true']);
  const second = await fx.run([`--image=${fx.images.cmdOnly.name}`, '-v', 'true']);
  t.is(second.code, 0);
  t.regex(first.stderr + second.stderr, /environment reused/);
});

test('--module activates a site module: its siteFs and siteEnv', async (t) => {
  const on = await fx.run([
    `--image=${fx.images.bare.name}`,
    '--module=tools',
    'sh',
    '-c',
    'cat /tools/tool.txt; echo $TOOLS',
  ]);
  t.is(on.code, 0, on.stderr);
  t.is(on.stdout, 'module tool\non\n');
  const off = await fx.run([
    `--image=${fx.images.bare.name}`,
    'sh',
    '-c',
    'test -e /tools || echo no-tools; echo "[$TOOLS]"',
  ]);
  t.is(off.stdout, 'no-tools\n[]\n');
});

test('concurrent launches of one environment share a single creation', async (t) => {
  const vol = join(fx.dir, 'concurrent');
  mkdirSync(vol);
  chownSync(vol, user.uid, user.gid);
  const created = (): number =>
    fx.log.split('\n').filter((l) => l.includes('environment created') && l.includes(vol)).length;
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      fx.run([
        `--image=${fx.images.bare.name}`,
        `--volume=${vol}:/data`,
        'sh',
        '-c',
        `echo ${i} > /data/f${i}; echo ok`,
      ]),
    ),
  );
  t.true(
    results.every((r) => r.code === 0 && r.stdout === 'ok\n'),
    JSON.stringify(results.filter((r) => r.code !== 0)),
  );
  t.is(created(), 1);
});

test('sitePreMountHook and sitePostMountHook run around the siteFs mounts, in the container root', async (t) => {
  const r = await fx.run([`--image=${fx.images.bare.name}`, 'cat', '/etc/pre-hook', '/etc/post-hook']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'not-yet\nmounted\n');
});

test('a perNodeCache volume is a private writable filesystem owned by the user, within the site limits', async (t) => {
  const r = await fx.run([
    `--image=${fx.images.bare.name}`,
    '--volume=/unused:/cache:perNodeCache=size=64M,fs=ext4',
    'sh',
    '-c',
    'echo scratch > /cache/f && cat /cache/f && stat -c "%u %a" /cache && grep " /cache " /proc/mounts',
  ]);
  t.is(r.code, 0, r.stderr);
  const [content, owner, mount] = r.stdout.trim().split('\n');
  t.is(content, 'scratch');
  t.is(owner.split(' ')[0], String(user.uid));
  t.regex(mount, /^\S+ \/cache ext4 rw,nosuid,nodev/);
  t.deepEqual(readdirSync(join(fx.dir, 'pnc')), [], 'the backing file is unlinked at once');

  const tooBig = await fx.run([
    `--image=${fx.images.bare.name}`,
    '--volume=/unused:/cache:perNodeCache=size=2G,fs=ext4',
    'true',
  ]);
  t.is(tooBig.code, 1, "asking for more than the site allows is the user's to fix");
  t.regex(tooBig.stderr, /over this site's limit.*perNodeCacheSizeLimit/);
  const xfs = await fx.run([
    `--image=${fx.images.bare.name}`,
    '--volume=/unused:/cache:perNodeCache=size=512M',
    'true',
  ]);
  t.not(xfs.code, 0);
  t.regex(xfs.stderr, /xfs.*perNodeCacheAllowedFsType|perNodeCacheAllowedFsType.*xfs/);
});
