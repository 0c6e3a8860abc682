/**
 * `shifterimg login`/`logout` end to end, as two users of a login node: bin/shifterimg run with
 * each user's uid (setpriv) → the real gateway (munge authentication, real munged) → a real
 * docker-registry with htpasswd. The saved login lives in the user's ~/.udiRoot/.cred (upstream's
 * format) and travels to the gateway in the munge payload of every request.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFileSync, spawn } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mungeDecode } from '../../common/munge.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { SHIFTERIMG, type RunResult } from './run-shifterimg.js';

const CREDS = { username: 'puller', password: 'pa55:w0rd' };
const LOCATION = 'private.site';
const USERS = ['gwlogin-alice', 'gwlogin-bob'] as const;
type UserName = (typeof USERS)[number];
interface TestUser {
  name: UserName;
  uid: number;
  gid: number;
  home: string;
}

let munged: Munged;
let registry: RunningRegistry;
let gateway: RunningGateway;
let dir: string;
let conf: string;
const users = {} as Record<UserName, TestUser>;

/** A user of our own with a home in the test's directory (created once, re-pointed every run). */
async function testUser(name: UserName): Promise<TestUser> {
  const home = join(dir, 'home', name);
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    execFileSync('usermod', ['-d', home, name]);
  } catch {
    execFileSync('useradd', ['-M', '-d', home, '-s', '/usr/sbin/nologin', name]);
  }
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  await mkdir(home, { recursive: true, mode: 0o700 });
  await chown(home, uid, gid);
  return { name, uid, gid, home };
}

function shifterimgAs(user: TestUser, args: string[], input = ''): Promise<RunResult> {
  const child = spawn(
    'setpriv',
    [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', SHIFTERIMG, '--config', conf, ...args],
    { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC' }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdin.end(input);
  return new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

async function pushPrivate(repo: string): Promise<string> {
  const layer = gzipSync(await tarLayer([{ name: 'secret.txt', content: `${repo}\n` }]));
  const pushed = await pushImage(registry.url, repo, '1', { layers: [layer], config: imageConfig({}), auth: CREDS });
  return pushed.manifestDigest.replace(/^sha256:/, '');
}

const credFile = (u: TestUser) => join(u.home, '.udiRoot', '.cred');

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-login-'));
  await chmod(dir, 0o755);
  await mkdir(join(dir, 'home'), { mode: 0o755 });
  for (const name of USERS) users[name] = await testUser(name);
  munged = await startMunged();
  registry = await startRegistry({ auth: { htpasswd: CREDS } });
  gateway = await startGateway({
    dir,
    timeoutMs: 60_000,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'munge',
      DefaultImageLocation: LOCATION,
      Locations: { [LOCATION]: { url: registry.url, authMethod: 'basic' } },
      Platforms: {
        loginsys: { accesstype: 'local', local: { imageDir: join(dir, 'images') }, mungeSocketPath: munged.socket },
      },
    },
  });
  conf = join(dir, 'udiRoot.conf');
  const lines = ['system=loginsys', `imageGateway=${gateway.url}`, `mungeSocketPath=${munged.socket}`, ''];
  await writeFile(conf, lines.join('\n'));
});

test.after.always(async () => {
  await gateway?.stop();
  await registry?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test.serial('login saves a munge credential in ~/.udiRoot/.cred (0600 in 0700), as upstream writes it', async (t) => {
  const alice = users['gwlogin-alice'];
  const r = await shifterimgAs(alice, ['login', LOCATION], `${CREDS.username}\n${CREDS.password}\n`);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Saved the login for private\.site on loginsys/);
  const file = await stat(credFile(alice));
  t.is(file.mode & 0o777, 0o600);
  t.is(file.uid, alice.uid);
  t.is((await stat(join(alice.home, '.udiRoot'))).mode & 0o777, 0o700);
  const text = await readFile(credFile(alice), 'utf8');
  t.regex(text, /^loginsys:private\.site=MUNGE:\S+:\n$/);
  t.false(text.includes(CREDS.password), 'the password is not in the file in clear');
  const cred = text.slice(text.indexOf('=') + 1).trim();
  const asAlice = execFileSync(
    'setpriv',
    [`--reuid=${alice.uid}`, `--regid=${alice.gid}`, '--clear-groups', 'unmunge', '--socket', munged.socket],
    { input: cred },
  ).toString();
  t.is(asAlice.slice(asAlice.indexOf('\n\n') + 2), `${CREDS.username}:${CREDS.password}`);
  await t.throwsAsync(
    mungeDecode(cred, { socket: munged.socket }),
    { message: /Unauthorized credential/ },
    'root cannot',
  );
});

test.serial(
  'a private image pulls with the saved login; another user without one gets FAILURE naming the registry',
  async (t) => {
    const id = await pushPrivate('team/login-a');
    const alice = await shifterimgAs(users['gwlogin-alice'], ['pull', 'team/login-a:1']);
    t.is(alice.code, 0, alice.stderr + gateway.logs());
    t.regex(alice.stdout, /status: READY/);
    t.is((await shifterimgAs(users['gwlogin-alice'], ['lookup', 'team/login-a:1'])).stdout.trim(), id);

    await pushPrivate('team/login-b');
    const bob = await shifterimgAs(users['gwlogin-bob'], ['pull', 'team/login-b:1']);
    t.is(bob.code, 1);
    t.regex(
      bob.stderr,
      /^shifterimg: pull of docker:team\/login-b:1 failed: .*refused access to team\/login-b \(HTTP 401\)/,
    );
    t.regex(bob.stderr, /shifterimg login/);
  },
);

test.serial('a wrong password: FAILURE naming the registry and saying to log in again', async (t) => {
  await pushPrivate('team/login-c');
  const bob = users['gwlogin-bob'];
  t.is((await shifterimgAs(bob, ['login'], `${CREDS.username}\nnot-the-password\n`)).code, 0);
  const r = await shifterimgAs(bob, ['pull', 'team/login-c:1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /refused access to team\/login-c \(HTTP 401\); the credentials were rejected/);
  t.regex(r.stderr, /run `shifterimg login` again/);
});

test.serial('logging in again replaces the login; logout removes it and pulls are anonymous again', async (t) => {
  const bob = users['gwlogin-bob'];
  const again = await shifterimgAs(bob, ['login'], `${CREDS.username}\n${CREDS.password}\n`);
  t.is(again.code, 0, again.stderr);
  t.is((await readFile(credFile(bob), 'utf8')).split('\n').filter(Boolean).length, 1, 'one line per location');
  await pushPrivate('team/login-d');
  const ok = await shifterimgAs(bob, ['pull', 'team/login-d:1']);
  t.is(ok.code, 0, ok.stderr);

  const out = await shifterimgAs(bob, ['logout']);
  t.is(out.code, 0, out.stderr);
  t.regex(out.stdout, /Removed the login for default on loginsys/);
  t.is(await readFile(credFile(bob), 'utf8'), '');
  await pushPrivate('team/login-e');
  const anon = await shifterimgAs(bob, ['pull', 'team/login-e:1']);
  t.is(anon.code, 1);
  t.regex(anon.stderr, /the image is private or does not exist/);
  t.regex((await shifterimgAs(bob, ['logout', LOCATION])).stdout, /no saved login for private\.site/);
});

test.serial('a .cred others may read, or that belongs to someone else, is refused with the fix', async (t) => {
  const alice = users['gwlogin-alice'];
  await chmod(credFile(alice), 0o644);
  const open = await shifterimgAs(alice, ['images']);
  t.is(open.code, 2);
  t.regex(
    open.stderr,
    /^shifterimg: \S+\.cred has mode 0644, so others may read or change your registry logins; run chmod 0600 /,
  );
  await chmod(credFile(alice), 0o600);
  await chown(credFile(alice), users['gwlogin-bob'].uid, users['gwlogin-bob'].gid);
  const foreign = await shifterimgAs(alice, ['images']);
  t.is(foreign.code, 2);
  t.regex(foreign.stderr, /\.cred belongs to uid \d+, not to you/);
  await chown(credFile(alice), alice.uid, alice.gid);
  t.is((await shifterimgAs(alice, ['images'])).code, 0);
});

test.serial('login with nothing on stdin saves nothing and says how to give the login', async (t) => {
  const alice = users['gwlogin-alice'];
  const before = await readFile(credFile(alice), 'utf8');
  const r = await shifterimgAs(alice, ['login', 'other.site']);
  t.is(r.code, 2);
  t.regex(r.stderr, /no login for other\.site on standard input: give the username and the password on two lines/);
  t.is(await readFile(credFile(alice), 'utf8'), before);
});

test.serial('on a terminal the password is asked for without echo', async (t) => {
  const alice = users['gwlogin-alice'];
  const command = [SHIFTERIMG, '--config', conf, 'login', 'tty.site'].join(' ');
  // util-linux script(1) gives shifterimg a pseudo-terminal; what it prints is what the user sees.
  const child = spawn(
    'setpriv',
    [`--reuid=${alice.uid}`, `--regid=${alice.gid}`, '--init-groups', '--', 'script', '-qec', command, '/dev/null'],
    { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', TERM: 'dumb' }, stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let screen = '';
  const waitFor = (text: string) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "${text}" on the terminal; it shows: ${screen}`)), 30_000);
      const check = () => {
        if (!screen.includes(text)) return;
        clearTimeout(timer);
        child.stdout.off('data', check);
        resolve();
      };
      child.stdout.on('data', check);
      check();
    });
  child.stdout.setEncoding('utf8').on('data', (d: string) => (screen += d));
  const done = new Promise<number | null>((resolve) => child.on('close', resolve));
  await waitFor('tty.site username: ');
  child.stdin.write('ttyuser\r');
  await waitFor('tty.site password: ');
  // The terminal is in raw mode once the prompt is out; give the event loop a moment to be sure.
  await new Promise((r) => setTimeout(r, 300));
  child.stdin.write('s3cret-Word\r');
  child.stdin.end();
  t.is(await done, 0, screen);
  t.true(screen.includes('ttyuser'), 'the username is echoed as typed');
  t.false(screen.includes('s3cret-Word'), `the password is not echoed: ${screen}`);
  t.regex(screen, /Saved the login for tty\.site on loginsys/);
  t.regex(await readFile(credFile(alice), 'utf8'), /^loginsys:tty\.site=MUNGE:/m);
});
