/**
 * Expiry end to end: bin/shifterimg → the real gateway (munge against a real munged) → a real
 * docker-registry, with one gateway serving two systems whose images live in two imageDirs.
 * What an admin and a user see from `expire` and `autoexpire`, that an expired image pulls again
 * (upstream #106 looped), and that nothing done for one system touches the other's (upstream #18).
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { access, chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { rootTest } from '../helpers/privileges.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { runShifterimg, SHIFTERIMG, type RunResult } from './run-shifterimg.js';

let munged: Munged;
let registry: RunningRegistry;
let gateway: RunningGateway;
let dir: string;
const conf: Record<'a' | 'b', string> = { a: '', b: '' };
const imageDir = (sys: 'a' | 'b') => join(dir, `images-${sys}`);

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

async function pushApp(repo: string, text: string): Promise<string> {
  const layer = gzipSync(await tarLayer([{ name: 'etc/hello', content: text }]));
  const pushed = await pushImage(registry.url, repo, '1.0', {
    layers: [layer],
    config: imageConfig({ Env: ['PATH=/bin'] }),
    manifestMediaType: 'docker',
  });
  return pushed.manifestDigest.replace(/^sha256:/, '');
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-expire-'));
  await chmod(dir, 0o755);
  munged = await startMunged();
  registry = await startRegistry();
  const platform = (sys: 'a' | 'b') => ({
    accesstype: 'local',
    local: { imageDir: imageDir(sys) },
    mungeSocketPath: munged.socket,
    admins: ['root'],
  });
  gateway = await startGateway({
    dir,
    timeoutMs: 60_000,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'munge',
      ImageExpirationTimeout: '0:00:00:03',
      DefaultImageLocation: registry.host,
      Locations: { [registry.host]: { url: registry.url } },
      Platforms: { sysa: platform('a'), sysb: platform('b') },
    },
  });
  for (const sys of ['a', 'b'] as const) {
    conf[sys] = join(dir, `udiRoot-${sys}.conf`);
    await writeFile(
      conf[sys],
      [
        `system=sys${sys}`,
        `imageGateway=${gateway.url}`,
        `mungeSocketPath=${munged.socket}`,
        'gatewayTimeout=60',
        'defaultImageType=docker',
        '',
      ].join('\n'),
    );
  }
});

test.after.always(async () => {
  await gateway?.stop();
  await registry?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const img = (repo: string) => `${registry.host}/${repo}:1.0`;
const shifterimg = (sys: 'a' | 'b', ...args: string[]) => runShifterimg(['--config', conf[sys], ...args]);

/** shifterimg as the unprivileged user `nobody`, as on a login node. */
function asNobody(sys: 'a' | 'b', ...args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      'runuser',
      ['-u', 'nobody', '--', SHIFTERIMG, '--config', conf[sys], ...args],
      { env: { PATH: process.env.PATH ?? '', TZ: 'UTC' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, signal: null, stdout, stderr }),
    );
  });
}

async function pulled(sys: 'a' | 'b', image: string, ...flags: string[]): Promise<void> {
  const r = await shifterimg(sys, ...flags, 'pull', image);
  if (r.code !== 0) throw new Error(`pull ${image} on sys${sys}: ${r.stderr}\n${gateway.logs().slice(-3000)}`);
}

test.serial('expire on one system removes its image there only; the image pulls again after', async (t) => {
  const id = await pushApp('team/two', 'two systems\n');
  const image = img('team/two');
  await pulled('a', image);
  await pulled('b', image);
  const metaA = join(imageDir('a'), `${id}.meta`);
  const before = { text: await readFile(metaA, 'utf8'), mtime: (await stat(metaA)).mtimeMs };

  const r = await shifterimg('b', 'expire', image);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, `expired docker:${image} on sysb\n`);
  t.false(await exists(join(imageDir('b'), `${id}.squashfs`)));
  t.false(await exists(join(imageDir('b'), `${id}.meta`)));
  const gone = await shifterimg('b', 'lookup', image);
  t.is(gone.code, 1);
  t.regex(gone.stderr, /not found on system 'sysb'/);

  t.is((await shifterimg('a', 'lookup', image)).stdout, `${id}\n`, 'system A still has it');
  t.true(await exists(join(imageDir('a'), `${id}.squashfs`)));
  t.deepEqual({ text: await readFile(metaA, 'utf8'), mtime: (await stat(metaA)).mtimeMs }, before);

  const again = await shifterimg('b', 'pull', image);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout.trimEnd().split('\n').at(-1)!, /status: READY/);
  t.true(again.stdout.trimEnd().split('\n').length < 200, 'the re-pull after expiry does not loop');
  t.is((await shifterimg('b', 'lookup', image)).stdout, `${id}\n`);
  t.true(await exists(join(imageDir('b'), `${id}.squashfs`)));
});

test.serial("a pull for system B with other ACLs leaves system A's record and files as they were", async (t) => {
  const id = await pushApp('team/acl', 'acl\n');
  const image = img('team/acl');
  await pulled('a', image);
  const metaA = join(imageDir('a'), `${id}.meta`);
  const before = await readFile(metaA, 'utf8');
  await pulled('b', image, '-u', 'root');
  t.regex(await readFile(join(imageDir('b'), `${id}.meta`), 'utf8'), /USERACL: 0/);
  t.is(await readFile(metaA, 'utf8'), before);
  const listA = await shifterimg('a', 'images');
  t.regex(listA.stdout, new RegExp(`sysa\\s+docker\\s+READY\\s+${id.slice(0, 10)}`));
  t.is((await shifterimg('a', 'lookup', image)).stdout, `${id}\n`);
});

rootTest.serial('autoexpire is for admins: it removes what was not used for ImageExpirationTimeout', async (t) => {
  const id = await pushApp('team/idle', 'idle\n');
  const image = img('team/idle');
  await pulled('a', image);
  const user = await asNobody('a', 'autoexpire');
  t.is(user.code, 4, user.stderr);
  t.regex(user.stderr, /^shifterimg: .*autoexpire is for admins of system sysa \(Platforms\.sysa\.admins\); nobody/);
  await new Promise((r) => setTimeout(r, 4000));
  const r = await shifterimg('a', 'autoexpire');
  t.is(r.code, 0, r.stderr);
  t.true(r.stdout.includes(`expired ${id}\n`), r.stdout);
  t.regex(r.stdout, /autoexpire: \d+ images? expired on sysa\n$/);
  t.false(await exists(join(imageDir('a'), `${id}.squashfs`)));
  t.is((await shifterimg('a', 'lookup', image)).code, 1);
});

rootTest.serial('a user expires a private image they pulled, and not a public one', async (t) => {
  const mine = img('team/mine');
  await pushApp('team/mine', 'mine\n');
  const pull = await asNobody('a', '-u', 'nobody', 'pull', mine);
  t.is(pull.code, 0, pull.stderr);
  const r = await asNobody('a', 'expire', mine);
  t.is(r.code, 0, r.stderr);
  t.is((await asNobody('a', 'lookup', mine)).code, 1);

  const shared = img('team/shared');
  await pushApp('team/shared', 'shared\n');
  await pulled('a', shared);
  const refused = await asNobody('a', 'expire', shared);
  t.is(refused.code, 4);
  t.regex(refused.stderr, /is not a private image only you \(nobody\) pulled: ask an admin of system sysa/);
  t.is((await shifterimg('a', 'lookup', shared)).code, 0);
});
