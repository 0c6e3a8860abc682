/**
 * Tags that share one image id (the same content pushed under two names), pulled by different
 * users with different access lists, end to end: real munged, registry, gateway and shifterd, with
 * `shifterimg` and `shifter` run as users made with useradd. One user's pull never narrows what
 * another user pulled: a lookup or launch by tag follows that tag's list, a launch by `id:` the
 * union of every tag's list (public when any tag is public).
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { LAUNCHER, ShifterdFixture } from './runtime-fixture.js';
import { SHIFTERIMG } from '../cli/run-shifterimg.js';

interface User {
  name: string;
  uid: number;
  gid: number;
}

function ensureUser(name: string): User {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', name]);
  }
  const id = (flag: string) => Number(execFileSync('id', [flag, name]).toString().trim());
  return { name, uid: id('-u'), gid: id('-g') };
}

const alice = ensureUser('shifteracl-alice');
const bob = ensureUser('shifteracl-bob');
const carol = ensureUser('shifteracl-carol');

const fx = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let gw: RunningGateway | undefined;
let munged: Munged | undefined;
const ids: Record<'shared' | 'pair' | 'race' | 'solo', string> = { shared: '', pair: '', race: '', solo: '' };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `file` as `user` with their own groups, as they would on a login or compute node. */
function runAs(user: User, file: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      'setpriv',
      [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--', file, ...args],
      {
        cwd: '/',
        env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', TZ: 'UTC', SHIFTERD_SOCKET: fx.socket },
        timeout: 120_000,
      },
      (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        resolve({ code: err ? (typeof code === 'number' ? code : -1) : 0, stdout, stderr });
      },
    );
  });
}

const shifterimg = (user: User, ...args: string[]) => runAs(user, SHIFTERIMG, ['--config', fx.configPath, ...args]);
const shifter = (user: User, image: string) => runAs(user, LAUNCHER, [`--image=${image}`, 'cat', '/content.txt']);
const metaOf = (id: string) => readFileSync(join(fx.imagePath, `${id}.meta`), 'utf8');

async function pushTwice(repo: string, tags: [string, string], content: string): Promise<string> {
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
      { name: 'content.txt', content },
    ]),
  );
  const config = imageConfig({ Env: ['PATH=/bin'] });
  const first = await pushImage(reg!.url, repo, tags[0], { layers: [layer], config });
  const second = await pushImage(reg!.url, repo, tags[1], { layers: [layer], config });
  if (first.manifestDigest !== second.manifestDigest) throw new Error('the two tags must share one manifest');
  return first.manifestDigest.replace(/^sha256:/, '');
}

test.before(async () => {
  munged = await startMunged();
  reg = await startRegistry();
  ids.shared = await pushTwice('team/shared', ['public', 'private'], 'shared content\n');
  ids.pair = await pushTwice('team/pair', ['alice', 'bob'], 'pair content\n');
  ids.race = await pushTwice('team/race', ['open', 'closed'], 'race content\n');
  ids.solo = await pushTwice('team/solo', ['1', '2'], 'solo content\n');
  gw = await startGateway({
    dir: fx.dir,
    timeoutMs: 60_000,
    config: {
      CacheDirectory: `${fx.dir}/gw-cache`,
      ExpandDirectory: `${fx.dir}/gw-expand`,
      Authentication: 'munge',
      WorkerThreads: 2,
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: {
        testsys: {
          accesstype: 'local',
          local: { imageDir: fx.imagePath },
          admins: ['root'],
          mungeSocketPath: munged.socket,
        },
      },
    },
  });
  fx.writeConfig([`imageGateway=${gw.url}`, 'system=testsys', `mungeSocketPath=${munged.socket}`, 'gatewayTimeout=30']);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
  await gw?.stop();
  await reg?.stop();
  await munged?.stop();
});

test.serial('a private pull of one tag leaves the public tag of the same image public for everyone', async (t) => {
  const pub = await shifterimg(alice, 'pull', 'team/shared:public');
  t.is(pub.code, 0, pub.stderr);
  const priv = await shifterimg(alice, '-u', alice.name, 'pull', 'team/shared:private');
  t.is(priv.code, 0, priv.stderr);

  const look = await shifterimg(bob, 'lookup', 'team/shared:public');
  t.is(look.code, 0, look.stderr);
  t.is(look.stdout.trim(), ids.shared);
  const hidden = await shifterimg(bob, 'lookup', 'team/shared:private');
  t.is(hidden.code, 1);
  t.regex(hidden.stderr, /not found on system 'testsys'/);
  const list = await shifterimg(bob, 'images');
  t.is(list.code, 0, list.stderr);
  t.regex(list.stdout, /team\/shared:public/);
  t.notRegex(list.stdout, /team\/shared:private/, "another user's private tag is not listed");

  t.deepEqual(await shifter(bob, 'team/shared:public'), { code: 0, stdout: 'shared content\n', stderr: '' });
  t.deepEqual(await shifter(bob, `id:${ids.shared}`), { code: 0, stdout: 'shared content\n', stderr: '' });
  const refused = await shifter(bob, 'team/shared:private');
  t.is(refused.code, 1);
  t.regex(refused.stderr, /^shifter: image not found: docker:team\/shared:private/);
  t.deepEqual(await shifter(alice, 'team/shared:private'), { code: 0, stdout: 'shared content\n', stderr: '' });
  t.notRegex(metaOf(ids.shared), /USERACL|GROUPACL/, 'the .meta of a publicly pulled image stays public');
});

test.serial('tags private to two users: each tag keeps its own list, the id admits both and nobody else', async (t) => {
  const a = await shifterimg(alice, '-u', alice.name, 'pull', 'team/pair:alice');
  t.is(a.code, 0, a.stderr);
  const b = await shifterimg(bob, '-u', bob.name, 'pull', 'team/pair:bob');
  t.is(b.code, 0, b.stderr);

  t.is((await shifterimg(alice, 'lookup', 'team/pair:alice')).code, 0);
  t.is((await shifterimg(alice, 'lookup', 'team/pair:bob')).code, 1);
  t.is((await shifterimg(bob, 'lookup', 'team/pair:bob')).code, 0);
  t.is((await shifterimg(bob, 'lookup', 'team/pair:alice')).code, 1);
  t.is((await shifterimg(carol, 'lookup', 'team/pair:alice')).code, 1);

  t.deepEqual(await shifter(alice, 'team/pair:alice'), { code: 0, stdout: 'pair content\n', stderr: '' });
  t.deepEqual(await shifter(bob, 'team/pair:bob'), { code: 0, stdout: 'pair content\n', stderr: '' });
  t.regex((await shifter(alice, 'team/pair:bob')).stderr, /^shifter: image not found: docker:team\/pair:bob/);
  t.deepEqual(await shifter(alice, `id:${ids.pair}`), { code: 0, stdout: 'pair content\n', stderr: '' });
  t.deepEqual(await shifter(bob, `id:${ids.pair}`), { code: 0, stdout: 'pair content\n', stderr: '' });
  const denied = await shifter(carol, `id:${ids.pair}`);
  t.is(denied.code, 1);
  t.regex(denied.stderr, /permission denied to image id:/);

  const acl = /^USERACL: (.*)$/m.exec(metaOf(ids.pair));
  t.truthy(acl, metaOf(ids.pair));
  t.deepEqual(
    acl![1]
      .split(',')
      .map(Number)
      .sort((x, y) => x - y),
    [alice.uid, bob.uid].sort((x, y) => x - y),
  );
});

test.serial('concurrent pulls of two tags of one image by two users lose neither list', async (t) => {
  const [closed, open] = await Promise.all([
    shifterimg(alice, '-u', alice.name, 'pull', 'team/race:closed'),
    shifterimg(bob, 'pull', 'team/race:open'),
  ]);
  t.is(closed.code, 0, closed.stderr);
  t.is(open.code, 0, open.stderr);

  t.is((await shifterimg(carol, 'lookup', 'team/race:open')).stdout.trim(), ids.race);
  t.is((await shifterimg(carol, 'lookup', 'team/race:closed')).code, 1);
  t.deepEqual(await shifter(carol, 'team/race:open'), { code: 0, stdout: 'race content\n', stderr: '' });
  t.deepEqual(await shifter(carol, `id:${ids.race}`), { code: 0, stdout: 'race content\n', stderr: '' });
  t.regex((await shifter(carol, 'team/race:closed')).stderr, /^shifter: image not found: docker:team\/race:closed/);
  t.deepEqual(await shifter(alice, 'team/race:closed'), { code: 0, stdout: 'race content\n', stderr: '' });
  t.notRegex(metaOf(ids.race), /USERACL|GROUPACL/);
});

test.serial("another user's private pull of a tag pulled publicly leaves it public", async (t) => {
  const pub = await shifterimg(alice, 'pull', 'team/solo:1');
  t.is(pub.code, 0, pub.stderr);
  // A READY image pulled in the last 10 s is returned as it is, whatever the ACL asked (upstream):
  // wait that out so that bob's pull really runs.
  await new Promise((r) => setTimeout(r, 11_000));
  const priv = await shifterimg(bob, '-u', bob.name, 'pull', 'team/solo:1');
  t.is(priv.code, 0, priv.stderr);
  t.regex(gw!.logs(), /"tag":"team\/solo:1".*"metaOnly":true/, "bob's pull ran (meta-only)");

  t.is((await shifterimg(carol, 'lookup', 'team/solo:1')).stdout.trim(), ids.solo);
  t.deepEqual(await shifter(carol, 'team/solo:1'), { code: 0, stdout: 'solo content\n', stderr: '' });
  t.deepEqual(await shifter(carol, `id:${ids.solo}`), { code: 0, stdout: 'solo content\n', stderr: '' });
  t.notRegex(metaOf(ids.solo), /USERACL|GROUPACL/);
});
