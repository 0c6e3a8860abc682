/**
 * The helper's own rule on device access (native/README.md): a bind with device access must not
 * be a block device, whatever shifterd sent. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachImage, createEnvironment, type ImageMount } from '../../node-daemon/adapters/index.js';
import { ensureUser, runInside, type TestUser } from './environment-run.js';
import { buildTestImage } from './image-fixture.js';

let dir: string;
let image: ImageMount;
let user: TestUser;

test.before(async () => {
  user = ensureUser('shiftertest1');
  dir = mkdtempSync(join(tmpdir(), 'shifter-devbind-'));
  chmodSync(dir, 0o755);
  // Majors 240-254 are for local use: no driver answers, the nodes are only looked at.
  execFileSync('mknod', ['-m', '0666', join(dir, 'fakechar'), 'c', '242', '7']);
  execFileSync('mknod', ['-m', '0666', join(dir, 'fakeblock'), 'b', '242', '7']);
  image = await attachImage(buildTestImage(dir, join(process.cwd(), 'test/native/fixtures')));
});

test.after.always(() => {
  image?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function spec(source: string) {
  return {
    image,
    uid: user.uid,
    gid: user.gid,
    groups: [user.gid],
    scaffoldDirs: ['/etc'],
    mounts: [{ kind: 'bind' as const, source, target: '/gpu0', readOnly: false, nodev: false }],
  };
}

test('a character device bound with device access keeps its numbers in the container', async (t) => {
  const env = await createEnvironment(spec(join(dir, 'fakechar')));
  try {
    const r = await runInside(env, ['/bin/stat', '-c', '%F %t:%T', '/gpu0'], user);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, 'character special file f2:7\n');
  } finally {
    env.close();
  }
});

test('a block device with device access is refused by the helper itself', async (t) => {
  const err = await t.throwsAsync(createEnvironment(spec(join(dir, 'fakeblock'))));
  t.is(
    err.message,
    'shifter-nshelper: spec: refusing a block device with device access: ' +
      `${join(dir, 'fakeblock')}: Operation not permitted`,
  );
});
