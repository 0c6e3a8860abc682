/**
 * The blob cache must not hand one user's private layer to another: naming a cached layer's
 * digest in a manifest is not enough, the pull's own registry, repository and credentials must
 * serve it. Real registry behind a real token server, real gateway process.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  MEDIA,
  imageConfig,
  pushBlob,
  pushImage,
  pushManifest,
  startRegistry,
  tarLayer,
  type Credentials,
  type RunningRegistry,
} from '../../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../../helpers/token-server.js';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

const ALICE: Credentials = { username: 'alice', password: 'alice-pw' };
const BOB: Credentials = { username: 'bob', password: 'bob-pw' };
let tokens: TokenServer;
let reg: RunningRegistry;
/** A registry bob runs himself, anonymous. */
let bobs: RunningRegistry;
/** In front of the shared registry: its log shows which blobs the gateway asked for. */
let proxy: FlakyProxy;
let gw: RunningGateway;
let dir: string;
let secretLayer: Buffer;
let secretDigest: string;
let secretManifest: string;

test.before(async () => {
  tokens = await startTokenServer({
    users: { alice: ALICE.password, bob: BOB.password },
    repos: [
      { name: 'alice/*', users: { alice: ['pull', 'push'] } },
      { name: 'bob/*', anonymous: ['pull'], users: { bob: ['pull', 'push', 'delete'] } },
    ],
  });
  reg = await startRegistry({ auth: { token: tokens } });
  bobs = await startRegistry();
  proxy = await startFlakyProxy(reg.url);
  dir = await mkdtemp(join(tmpdir(), 'gw-blob-access-'));
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'mock',
      DefaultImageLocation: 'shared.site',
      Locations: { 'shared.site': { url: proxy.url }, 'bobs.site': { url: bobs.url } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
    },
  });
  secretLayer = gzipSync(await tarLayer([{ name: 'secret.txt', content: 'alice private key material\n' }]));
  const pushed = await pushImage(reg.url, 'alice/secret', '1', {
    layers: [secretLayer],
    config: imageConfig({}),
    auth: ALICE,
  });
  secretDigest = pushed.layerDigests[0]!;
  secretManifest = pushed.manifestDigest;
  const rec = await pullUntilDone('alice/secret:1', 1000, { 'shared.site': ALICE });
  if (rec.status !== 'READY') throw new Error(`alice's own pull failed: ${String(rec.status_message)}`);
});

test.after.always(async () => {
  await gw?.stop();
  await proxy?.stop();
  await reg?.stop();
  await bobs?.stop();
  await tokens?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function header(uid: number, logins: Record<string, Credentials>): Record<string, string> {
  const locations = Object.fromEntries(Object.entries(logins).map(([loc, c]) => [loc, `${c.username}:${c.password}`]));
  const token = Buffer.from(JSON.stringify({ authorized_locations: locations })).toString('base64');
  return { authentication: `good:user${uid}:users:${token}:${uid}:100` };
}

async function pullUntilDone(
  tag: string,
  uid: number,
  logins: Record<string, Credentials> = {},
): Promise<Record<string, unknown>> {
  for (let i = 0; ; i++) {
    const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, { method: 'POST', headers: header(uid, logins) });
    const rec = (await res.json()) as Record<string, unknown>;
    if (rec.status === 'READY' || rec.status === 'FAILURE' || i > 400) return rec;
    await new Promise((r) => setTimeout(r, 150));
  }
}

/**
 * Leaves `repo:tag` naming alice's layer while the registry does not serve that layer from `repo`:
 * what a manifest written by someone who knows only the digest amounts to (the registry refuses
 * such a push, so the test pushes the layer, then the manifest, then removes the layer's link).
 */
async function pushManifestNamingSecret(
  registryUrl: string,
  repo: string,
  tag: string,
  auth?: Credentials,
  configJson: object = imageConfig({ Env: [`TAG=${tag}`] }),
): Promise<string> {
  await pushBlob(registryUrl, repo, secretLayer, auth);
  const config = Buffer.from(JSON.stringify(configJson));
  const configDigest = await pushBlob(registryUrl, repo, config, auth);
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: configDigest, size: config.length },
    layers: [{ mediaType: MEDIA.ociLayerGzip, digest: secretDigest, size: secretLayer.length }],
  });
  const digest = await pushManifest(registryUrl, repo, tag, manifest, MEDIA.ociManifest, auth);
  const headers: Record<string, string> = {};
  if (auth) {
    const url = new URL(tokens.realm);
    url.searchParams.set('service', tokens.service);
    url.searchParams.set('scope', `repository:${repo}:pull,delete`);
    const basic = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
    const answer = (await (await fetch(url, { headers: { authorization: basic } })).json()) as { token: string };
    headers.authorization = `Bearer ${answer.token}`;
  }
  const deleted = await fetch(`${registryUrl}/v2/${repo}/blobs/${secretDigest}`, { method: 'DELETE', headers });
  if (deleted.status !== 202) throw new Error(`removing the layer from ${repo} failed: HTTP ${deleted.status}`);
  const check = await fetch(`${registryUrl}/v2/${repo}/blobs/${secretDigest}`, { method: 'HEAD', headers });
  if (check.status !== 404) throw new Error(`the layer is still served from ${repo}: HTTP ${check.status}`);
  return digest;
}

const blobRequests = (method: string, digest: string) =>
  proxy.requests.filter((r) => r.method === method && r.url.endsWith(`/blobs/${digest}`));

test.serial(
  "a repository whose manifest names another user's private layer does not get it from the cache",
  async (t) => {
    await pushManifestNamingSecret(reg.url, 'bob/evil', '1', BOB);
    const rec = await pullUntilDone('bob/evil:1', 1001, { 'shared.site': BOB });
    t.is(rec.status, 'FAILURE', "bob must not get an image with alice's layer");
    t.regex(String(rec.status_message), new RegExp(`blob ${secretDigest} of bob/evil not found`));
  },
);

test.serial(
  "a copy of a private image's manifest whose layers the repository does not serve gets no access to it",
  async (t) => {
    const copied = await pushManifestNamingSecret(reg.url, 'bob/copy', '1', BOB, imageConfig({}));
    t.is(copied, secretManifest, 'the same manifest, so the image is already on the system');
    const rec = await pullUntilDone('bob/copy:1', 1001, { 'shared.site': BOB });
    t.is(rec.status, 'FAILURE', "the meta-only path must not add bob to alice's image");
    t.regex(String(rec.status_message), new RegExp(`blob ${secretDigest} of bob/copy not found`));
  },
);

test.serial('a registry the user runs cannot claim a cached layer it never served', async (t) => {
  await pushManifestNamingSecret(bobs.url, 'bob/evil', '1');
  const rec = await pullUntilDone('bobs.site/bob/evil:1', 1001);
  t.is(rec.status, 'FAILURE', "bob must not get an image with alice's layer");
  t.regex(String(rec.status_message), new RegExp(`blob ${secretDigest} of bob/evil not found`));
});

test.serial(
  "a warm re-pull with the owner's credentials asks the registry (HEAD) and does not download the layer",
  async (t) => {
    proxy.clearLog();
    await pushImage(reg.url, 'alice/secret', '2', {
      layers: [secretLayer],
      config: imageConfig({ Env: ['V=2'] }),
      auth: ALICE,
    });
    const rec = await pullUntilDone('alice/secret:2', 1000, { 'shared.site': ALICE });
    t.is(rec.status, 'READY', String(rec.status_message));
    t.is(blobRequests('GET', secretDigest).length, 0, 'the cached layer is reused');
    t.deepEqual(
      blobRequests('HEAD', secretDigest).map((r) => r.status),
      [200],
    );
  },
);

test.serial(
  'a public layer re-pulled anonymously from the repository it came from needs no request at all',
  async (t) => {
    const layer = gzipSync(await tarLayer([{ name: 'pub.txt', content: 'public\n' }]));
    const first = await pushImage(reg.url, 'bob/public', '1', { layers: [layer], config: imageConfig({}), auth: BOB });
    t.is((await pullUntilDone('bob/public:1', 1002)).status, 'READY');
    await pushImage(reg.url, 'bob/public', '2', { layers: [layer], config: imageConfig({ Env: ['V=2'] }), auth: BOB });
    proxy.clearLog();
    const rec = await pullUntilDone('bob/public:2', 1002);
    t.is(rec.status, 'READY', String(rec.status_message));
    const digest = first.layerDigests[0];
    t.is(blobRequests('GET', digest).length + blobRequests('HEAD', digest).length, 0);
  },
);
