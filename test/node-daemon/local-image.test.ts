/**
 * `local:` images (upstream's allowLocalChroot): a directory tree on the node as the container
 * root, run by the real launcher as an unprivileged user against a real shifterd. The tree is
 * opened with the user's credentials, mounted nosuid and nodev, with the site's files on top.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  copyFileSync,
  mkdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { REPO, ShifterdFixture, ensureTestUser } from './runtime-fixture.js';
import { ensureUser } from '../native/environment-run.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();
const APPLETS = ['sh', 'cat', 'id', 'ls', 'echo', 'true', 'grep'];

/** A busybox tree owned by `owner`, with a setuid-root showid that root put there. */
function makeTree(dir: string, owner: { uid: number; gid: number }, release: string): string {
  for (const d of ['bin', 'etc', 'usr/bin']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(dir, 'bin/busybox'));
  chmodSync(join(dir, 'bin/busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', join(dir, 'bin', a));
  writeFileSync(join(dir, 'etc/os-release'), `PRETTY_NAME="${release}"\n`);
  execFileSync('chown', ['-R', `${owner.uid}:${owner.gid}`, dir]);
  const showid = join(dir, 'usr/bin/showid');
  execFileSync('gcc', ['-static', '-O2', '-o', showid, join(REPO, 'test/native/fixtures/showid.c')]);
  chownSync(showid, 0, 0);
  chmodSync(showid, 0o4755);
  return dir;
}

let tree: string;

test.before(async () => {
  tree = makeTree(join(fx.dir, 'mine'), user, 'local tree one');
  fx.writeConfig(['allowLocalChroot=1']);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
});

test.serial('a user-owned busybox tree runs as the root of the container, site files on top', async (t) => {
  const r = await fx.run([`--image=local:${tree}`, 'sh', '-c', 'cat /etc/os-release; cat /site/site-file; id -u']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `PRETTY_NAME="local tree one"\nfrom the site\n${user.uid}\n`);
});

test.serial('the tree is mounted nosuid and nodev: a setuid-root program in it does not gain root', async (t) => {
  const r = await fx.run([`--image=local:${tree}`, '/usr/bin/showid']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `${user.uid} ${user.uid} ${user.uid}\n`);
  // The user namespace alone already ignores root's setuid bit; the mount flags are the host-side guarantee.
  const mounts = await fx.run([`--image=local:${tree}`, 'grep', ' /usr ', '/proc/self/mountinfo']);
  t.is(mounts.code, 0, mounts.stderr);
  const options = mounts.stdout.split(' ')[5].split(',');
  t.true(options.includes('nosuid') && options.includes('nodev'), mounts.stdout);
});

test.serial("the tree is mounted with the user's own rights: their files writable, root's not", async (t) => {
  const r = await fx.run([
    `--image=local:${tree}`,
    'sh',
    '-c',
    'echo written > /usr/bin/note && cat /usr/bin/note; echo x >> /usr/bin/showid || echo refused',
  ]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'written\nrefused\n');
  t.is(readFileSync(join(tree, 'usr/bin/note'), 'utf8'), 'written\n');
});

test.serial('a directory swapped in under the same path is used, not the cached environment', async (t) => {
  const path = join(fx.dir, 'swapped');
  makeTree(path, user, 'before');
  const before = await fx.run([`--image=local:${path}`, 'cat', '/etc/os-release']);
  t.is(before.stdout, 'PRETTY_NAME="before"\n', before.stderr);
  renameSync(path, join(fx.dir, 'swapped-old'));
  makeTree(path, user, 'after');
  const after = await fx.run([`--image=local:${path}`, 'cat', '/etc/os-release']);
  t.is(after.stdout, 'PRETTY_NAME="after"\n', after.stderr);
});

test.serial("another user's 0700 tree is refused", async (t) => {
  const other = ensureUser('shifterlocal2');
  const theirs = makeTree(join(fx.dir, 'theirs'), other, 'not yours');
  chmodSync(theirs, 0o700);
  const r = await fx.run([`--image=local:${theirs}`, 'cat', '/etc/os-release']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^shifter: .*open local image as the user: .*theirs: Permission denied\n$/);
});

test.serial('a symlink on the path, a relative path or a file is refused with one line', async (t) => {
  const link = join(fx.dir, 'link-to-mine');
  symlinkSync(tree, link);
  const viaLink = await fx.run([`--image=local:${link}`, 'true']);
  t.is(viaLink.code, 1);
  t.regex(viaLink.stderr, /^shifter: .*a symlink is on the path.*link-to-mine.*\n$/);
  const file = await fx.run([`--image=local:${tree}/etc/os-release`, 'true']);
  t.is(file.code, 1);
  t.regex(file.stderr, /^shifter: .*not a directory.*os-release.*\n$/);
  const relative = await fx.run(['--image=local:mine', 'true']);
  t.is(relative.code, 1);
  t.regex(relative.stderr, /^shifter: .*\n$/);
});

test.serial('allowLocalChroot=0 refuses local: images', async (t) => {
  fx.writeConfig([]);
  const reloaded = fx.log.split('configuration reloaded').length;
  fx.daemon!.kill('SIGHUP');
  for (let i = 0; i < 200 && fx.log.split('configuration reloaded').length === reloaded; i++)
    await new Promise((r) => setTimeout(r, 50));
  const r = await fx.run([`--image=local:${tree}`, 'cat', '/etc/os-release']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /^shifter: local: images are disabled on this system \(udiRoot.conf allowLocalChroot=0\).*\n$/);
});
