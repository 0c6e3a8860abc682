/**
 * End to end: bin/shifterimg → the real bin/shifter-gateway (munge authentication against a real
 * munged) → a real docker-registry: what a user sees when a pull fails or an image is unknown.
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { runShifterimg } from './run-shifterimg.js';

let munged: Munged;
let registry: RunningRegistry;
let gateway: RunningGateway;
let dir: string;
let conf: string;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-e2e-'));
  munged = await startMunged();
  registry = await startRegistry();
  const layer = gzipSync(await tarLayer([
    { name: 'etc/', type: 'directory' },
    { name: 'etc/hello', content: 'hello from the image\n' },
  ]));
  await pushImage(registry.url, 'team/app', '1.0', {
    layers: [layer], config: imageConfig({ Env: ['PATH=/usr/bin:/bin', 'GREETING=hi'], Cmd: ['/bin/sh'] }), manifestMediaType: 'docker',
  });
  gateway = await startGateway({
    dir,
    // The machine is shared with other test runs; a cold start can be slow.
    timeoutMs: 60_000,
    config: {
      CacheDirectory: join(dir, 'cache'), ExpandDirectory: join(dir, 'expand'), Authentication: 'munge',
      DefaultImageLocation: registry.host, Locations: { [registry.host]: { url: registry.url } },
      Platforms: { e2esys: { accesstype: 'local', local: { imageDir: join(dir, 'images') }, mungeSocketPath: munged.socket, admins: ['root'] } },
    },
  });
  conf = join(dir, 'udiRoot.conf');
  await writeFile(conf, [
    'system=e2esys', `imageGateway=${gateway.url}`, `mungeSocketPath=${munged.socket}`, 'gatewayTimeout=30',
    'defaultImageType=docker', `imagePath=${join(dir, 'images')}`, '',
  ].join('\n'));
});

test.after.always(async () => {
  await gateway?.stop();
  await registry?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test.serial('pulling a tag the registry does not have exits 1 with the registry\'s reason', async (t) => {
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
