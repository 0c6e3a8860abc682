/** Registry credentials travel in the caller's credential payload (`authorized_locations`). */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

const CREDS = { username: 'puller', password: 'p4ss:word' };
let reg: RunningRegistry;
let gw: RunningGateway;
let dir: string;

test.before(async () => {
  reg = await startRegistry({ auth: { htpasswd: CREDS } });
  dir = await mkdtemp(join(tmpdir(), 'gw-cred-'));
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'mock',
      DefaultImageLocation: 'private.site',
      Locations: { 'private.site': { url: reg.url, authMethod: 'basic' } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
    },
  });
});

test.after.always(async () => {
  await gw?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const header = (locations?: Record<string, string>) => {
  const token = locations ? Buffer.from(JSON.stringify({ authorized_locations: locations })).toString('base64') : '';
  return { authentication: `good:alice:users:${token}:1000:100` };
};

async function pullUntilDone(tag: string, headers: Record<string, string>): Promise<Record<string, unknown>> {
  for (let i = 0; ; i++) {
    const rec = (await (
      await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, { method: 'POST', headers })
    ).json()) as Record<string, unknown>;
    if (rec.status === 'READY' || rec.status === 'FAILURE' || i > 200) return rec;
    await new Promise((r) => setTimeout(r, 150));
  }
}

test('credentials for the location (or default) pull a private image; with no ACL asked for it is readable by all, as upstream', async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'p.txt', content: 'private\n' }]));
  const pushed = await pushImage(reg.url, 'team/priv', '1', { layers: [layer], config: imageConfig({}), auth: CREDS });
  const rec = await pullUntilDone('team/priv:1', header({ default: `${CREDS.username}:${CREDS.password}` }));
  t.is(rec.status, 'READY', String(rec.status_message));
  t.is(rec.id, pushed.manifestDigest.replace('sha256:', ''));
  const anon = await fetch(`${gw.url}/api/lookup/sys/docker/team/priv:1/`);
  t.is(anon.status, 200, 'no ACL was asked for, so the image is readable by everyone on the system (upstream)');
});

test("without credentials the pull fails with the registry's refusal", async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'q.txt', content: 'q\n' }]));
  await pushImage(reg.url, 'team/priv2', '1', { layers: [layer], config: imageConfig({}), auth: CREDS });
  const rec = await pullUntilDone('team/priv2:1', header());
  t.is(rec.status, 'FAILURE');
  t.regex(String(rec.status_message), /401|credential|authori|denied|login/i);
});
