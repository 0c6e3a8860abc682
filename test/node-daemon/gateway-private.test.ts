/**
 * A private image by name: the gateway (munge auth) hides it from anonymous lookups, so
 * shifterd retries the lookup with a munge credential made as the caller. Allowed user: runs.
 * Another uid: "image not found" (the gateway will not even say it exists).
 */
import { rootTest as test } from '../helpers/privileges.js';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../helpers/registry.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { mungeCredentialAs } from '../../node-daemon/user-credential.js';
import { ShifterdFixture, ensureTestUser } from './runtime-fixture.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let gw: RunningGateway | undefined;
let munged: Munged | undefined;

test.before(async () => {
  munged = await startMunged();
  reg = await startRegistry();
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'secret.txt', content: 'private content\n' },
    ]),
  );
  await pushImage(reg.url, 'team/private', '1', { layers: [layer], config: imageConfig({ Env: ['PATH=/bin'] }) });
  gw = await startGateway({
    dir: fx.dir,
    config: {
      CacheDirectory: `${fx.dir}/gw-cache`,
      ExpandDirectory: `${fx.dir}/gw-expand`,
      Authentication: 'munge',
      WorkerThreads: 1,
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
  const deadline = Date.now() + 45_000;
  for (;;) {
    const cred = await mungeCredentialAs({ uid: user.uid, gid: user.gid, groups: [] }, munged.socket);
    if (cred === undefined) throw new Error('munge did not make a credential for the test user');
    const res = await fetch(`${gw.url}/api/pull/testsys/docker/team/private:1/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authentication: cred },
      body: JSON.stringify({ allowed_uids: String(user.uid) }),
    });
    const rec = (await res.json()) as { status?: string };
    if (rec.status === 'READY') break;
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  fx.writeConfig([`imageGateway=${gw.url}`, 'system=testsys', `mungeSocketPath=${munged.socket}`]);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
  await gw?.stop();
  await reg?.stop();
  await munged?.stop();
});

test('the allowed user runs the private image by name', async (t) => {
  const r = await fx.run(['--image=team/private:1', 'sh', '-c', 'cat /secret.txt']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'private content\n');
});

test('another user is told the image is not found', async (t) => {
  const r = await fx.run(['--image=team/private:1', 'sh', '-c', 'cat /secret.txt'], { uid: 4249 });
  t.is(r.code, 1);
  t.regex(r.stderr, /^shifter: image not found: docker:team\/private:1/);
  t.is(r.stdout, '');
});
