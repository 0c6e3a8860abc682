/**
 * Upstream's sitePreMountHook/sitePostMountHook around the site mounts, on real namespaces:
 * run as root in the container root under construction, with a clean environment and no
 * helper fds; a failing hook fails the environment with one clear line. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attachImage,
  createEnvironment,
  type EnvironmentSpec,
  type ImageMount,
} from '../../node-daemon/adapters/index.js';
import { ensureUser, runInside, type TestUser } from './environment-run.js';
import { buildTestImage } from './image-fixture.js';

let dir: string;
let image: ImageMount;
let user: TestUser;

test.before(async () => {
  user = ensureUser('shiftertest1');
  dir = mkdtempSync(join(tmpdir(), 'shifter-hooks-'));
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'site'));
  writeFileSync(join(dir, 'site', 'from-site'), 'site volume\n');
  image = await attachImage(buildTestImage(dir, join(process.cwd(), 'test/native/fixtures')));
});

test.after.always(() => {
  image?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function hook(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, body, { mode: 0o755 });
  return path;
}

function spec(hooks: EnvironmentSpec['hooks']): EnvironmentSpec {
  return {
    image,
    uid: user.uid,
    gid: user.gid,
    groups: [user.gid],
    scaffoldDirs: ['/etc'],
    mounts: [
      { kind: 'proc', target: '/proc' },
      { kind: 'bind', source: join(dir, 'site'), target: '/site', readOnly: true, phase: 'site' },
    ],
    hooks,
  };
}

test('the hooks run as root in the container root, before and after the site mounts, and what they write is in the container', async (t) => {
  const out = join(dir, 'hook-output');
  const pre = hook(
    'pre.sh',
    [
      'set -e',
      'echo "pre: $(id -u) $PATH" > etc/site-hook',
      'ls site 2>/dev/null | wc -l >> etc/site-hook',
      `ls /proc/self/fd > ${out}`,
      'read line || echo "stdin: eof" >> etc/site-hook',
      'echo hidden-stdout',
    ].join('\n'),
  );
  const post = hook('post.sh', 'ls site >> etc/site-hook\n');
  const env = await createEnvironment(spec({ preMount: pre, postMount: post }));
  try {
    const r = await runInside(env, ['/bin/cat', '/etc/site-hook'], user);
    t.is(r.code, 0, r.stderr);
    // The pre hook saw an empty /site (mounted after it), the post hook the site volume.
    t.is(r.stdout, 'pre: 0 /usr/bin:/usr/sbin:/bin:/sbin\n0\nstdin: eof\nfrom-site\n');
    const denied = await runInside(env, ['/bin/sh', '-c', 'echo x > /etc/site-hook'], user);
    t.not(denied.code, 0);
  } finally {
    env.close();
  }
  // Only stdin, stdout, stderr and ls's own directory fd: nothing of the helper's.
  t.deepEqual(readFileSync(out, 'utf8').trim().split('\n').map(Number).sort(), [0, 1, 2, 3]);
});

test('a failing hook fails the environment with one clear line naming it, its status and its stderr', async (t) => {
  const bad = hook('bad.sh', 'echo "first line" >&2\necho "mkdir: cannot create /nowhere" >&2\nexit 3\n');
  const err = await t.throwsAsync(createEnvironment(spec({ preMount: bad })));
  t.is(
    err.message,
    `shifter-nshelper: sitePreMountHook ${bad}: exited with status 3 (last stderr line: mkdir: cannot create /nowhere)`,
  );
  const post = await t.throwsAsync(createEnvironment(spec({ postMount: join(dir, 'missing.sh') })));
  t.regex(
    post.message,
    new RegExp(
      `^shifter-nshelper: sitePostMountHook ${join(dir, 'missing.sh')}: exited with status 2 \\(last stderr line: .*missing\\.sh.*\\)$`,
    ),
  );
});

test('a hook killed by a signal is reported as such', async (t) => {
  const killed = hook('killed.sh', 'kill -9 $$\n');
  const err = await t.throwsAsync(createEnvironment(spec({ postMount: killed })));
  t.is(err.message, `shifter-nshelper: sitePostMountHook ${killed}: was killed by signal 9`);
});

test('a hook whose stderr says "Permission denied" is a failed hook, not a permission refusal', async (t) => {
  const bad = hook('denied.sh', 'echo "cat: /secret: Permission denied" >&2\nexit 1\n');
  const err = await t.throwsAsync(createEnvironment(spec({ preMount: bad })));
  t.is((err as Error & { code?: string }).code, 'IO_ERROR');
  const why = 'exited with status 1 (last stderr line: cat: /secret: Permission denied)';
  t.is(err.message, `shifter-nshelper: sitePreMountHook ${bad}: ${why}`);
});
