/**
 * End to end: bin/shifterimg → the real bin/shifter-gateway (munge authentication against a real
 * munged) → a real docker-registry. What a user does on a login node: pull, images, lookup.
 */
import test from 'ava';
import { rootTest } from '../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { runShifterimg, SHIFTERIMG } from './run-shifterimg.js';

let munged: Munged;
let registry: RunningRegistry;
let gateway: RunningGateway;
let dir: string;
let conf: string;
let manifestHex: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-e2e-'));
  // udiRoot.conf must be readable by the unprivileged user of the ACL test, as on a real system.
  await chmod(dir, 0o755);
  munged = await startMunged();
  registry = await startRegistry();
  const layer = gzipSync(
    await tarLayer([
      { name: 'etc/', type: 'directory' },
      { name: 'etc/hello', content: 'hello from the image\n' },
    ]),
  );
  const pushed = await pushImage(registry.url, 'team/app', '1.0', {
    layers: [layer],
    config: imageConfig({ Env: ['PATH=/usr/bin:/bin', 'GREETING=hi'], Cmd: ['/bin/sh'] }),
    manifestMediaType: 'docker',
  });
  manifestHex = pushed.manifestDigest.replace(/^sha256:/, '');
  await pushImage(registry.url, 'team/secret', '1.0', {
    layers: [gzipSync(await tarLayer([{ name: 'secret', content: 'only for root\n' }]))],
    config: imageConfig({ Env: ['PATH=/bin'] }),
    manifestMediaType: 'docker',
  });
  gateway = await startGateway({
    dir,
    // The machine is shared with other test runs; a cold start can be slow.
    timeoutMs: 60_000,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'munge',
      DefaultImageLocation: registry.host,
      Locations: { [registry.host]: { url: registry.url } },
      Platforms: {
        e2esys: {
          accesstype: 'local',
          local: { imageDir: join(dir, 'images') },
          mungeSocketPath: munged.socket,
          admins: ['root'],
        },
      },
    },
  });
  conf = join(dir, 'udiRoot.conf');
  await writeFile(
    conf,
    [
      'system=e2esys',
      `imageGateway=${gateway.url}`,
      `mungeSocketPath=${munged.socket}`,
      'gatewayTimeout=30',
      'defaultImageType=docker',
      `imagePath=${join(dir, 'images')}`,
      '',
    ].join('\n'),
  );
});

test.after.always(async () => {
  await gateway?.stop();
  await registry?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test.serial(
  'pull reaches READY, then images lists it and lookup prints the id of the file the runtime will mount',
  async (t) => {
    const image = `${registry.host}/team/app:1.0`;
    const pull = await runShifterimg(['--config', conf, 'pull', image]);
    t.is(pull.stderr, '', gateway.logs());
    t.is(pull.code, 0);
    const lines = pull.stdout.trimEnd().split('\n');
    for (const l of lines) t.regex(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d Pulling Image: docker:\S+, status: [A-Z]+/);
    t.regex(lines.at(-1)!, new RegExp(`^\\S+ Pulling Image: docker:${image.replace(/[.]/g, '\\.')}, status: READY`));

    const images = await runShifterimg(['--config', conf, 'images']);
    t.is(images.code, 0);
    const row = images.stdout.split('\n').find((l) => l.includes(image));
    t.truthy(row, images.stdout);
    t.regex(row!, /^e2esys\s+docker\s+READY\s+[0-9a-f]{10}\s{3}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d /);

    const lookup = await runShifterimg(['--config', conf, 'lookup', image]);
    t.is(lookup.code, 0);
    const id = lookup.stdout.trim();
    t.regex(id, /^[0-9a-f]{64}$/);
    t.is(id, manifestHex, 'the id is the manifest digest (upstream: external images)');
    t.true(
      (await readdir(join(dir, 'images'))).some((f) => f.startsWith(id)),
      'the image file is named by the id',
    );
  },
);

test.serial("pulling a tag the registry does not have exits 1 with the registry's reason", async (t) => {
  const r = await runShifterimg(['--config', conf, 'pull', `${registry.host}/team/app:nope`]);
  t.is(r.code, 1);
  t.regex(r.stdout, /status: FAILURE/);
  t.regex(r.stderr, /^shifterimg: pull of docker:[^ ]+\/team\/app:nope failed: .+\n$/);
});

test.serial('lookup of an image never pulled exits 1', async (t) => {
  const r = await runShifterimg(['--config', conf, 'lookup', 'docker:never/pulled:1']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^shifterimg: image docker:never\/pulled:1 not found on system 'e2esys'/);
});

/** Runs shifterimg as the unprivileged user `nobody`, as a user on a login node would. */
function asNobody(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      'runuser',
      ['-u', 'nobody', '--', SHIFTERIMG, ...args],
      { env: { PATH: process.env.PATH ?? '', TZ: 'UTC' } },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

rootTest.serial('-u makes a private image: the listed user finds it, anybody else does not', async (t) => {
  const image = `${registry.host}/team/secret:1.0`;
  const pull = await runShifterimg(['--config', conf, '-u', 'root', 'pull', image]);
  t.is(pull.code, 0, pull.stderr + gateway.logs());
  t.is((await runShifterimg(['--config', conf, 'lookup', image])).code, 0);
  const other = await asNobody(['--config', conf, 'lookup', image]);
  t.is(other.code, 1, other.stderr);
  t.regex(other.stderr, /not found on system 'e2esys'/);
  const list = await asNobody(['--config', conf, 'images']);
  t.is(list.code, 0, list.stderr);
  t.false(list.stdout.includes('team/secret'));
});
