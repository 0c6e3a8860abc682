/**
 * End to end: a real docker-registry (behind the flaky proxy), the real gateway binary, pulls
 * through the REST API until READY, and the files it leaves in imageDir.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

let reg: RunningRegistry;
let proxy: FlakyProxy;
let gw: RunningGateway;
let dir: string;
let imageDir: string;

const ALICE = { authentication: 'good:alice:users::1000:100' };
const BOB = { authentication: 'good:bob:users::1001:101' };

async function push(repo: string, tag: string, files: Record<string, string>, config: Record<string, unknown> = {}) {
  const layer = gzipSync(await tarLayer(Object.entries(files).map(([name, content]) => ({ name, content }))));
  return pushImage(reg.url, repo, tag, { layers: [layer], config: imageConfig(config) });
}

test.before(async () => {
  reg = await startRegistry();
  proxy = await startFlakyProxy(reg.url);
  dir = await mkdtemp(join(tmpdir(), 'gw-e2e-'));
  imageDir = join(dir, 'images');
  gw = await startGateway({
    dir,
    env: { ENABLE_LABELS: '1' },
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'mock',
      WorkerThreads: 2,
      DefaultImageLocation: 'site',
      Locations: { site: { url: proxy.url }, [reg.host]: { url: reg.url } },
      AllowedRegistries: ['localhost:*'],
      Platforms: { sys: { accesstype: 'local', local: { imageDir }, admins: ['root'] } },
    },
  });
});

test.after.always(async () => {
  await gw?.stop();
  await proxy?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Rec = Record<string, unknown>;

async function pull(tag: string, headers: Record<string, string> = ALICE, body: object = {}): Promise<Rec> {
  const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  if (res.status !== 200) throw new Error(`pull ${tag}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as Rec;
}

async function pullUntilDone(tag: string, headers: Record<string, string> = ALICE, body: object = {}): Promise<Rec> {
  const deadline = Date.now() + 45_000;
  for (;;) {
    const rec = await pull(tag, headers, body);
    if (rec.status === 'READY' || rec.status === 'FAILURE' || Date.now() > deadline) return rec;
    await new Promise((r) => setTimeout(r, 200));
  }
}

const manifestGets = (repo: string) =>
  proxy.requests.filter((r) => r.method === 'GET' && r.url.startsWith(`/v2/${repo}/manifests/`)).length;
const blobGets = (repo: string, digest: string) =>
  proxy.requests.filter((r) => r.method === 'GET' && r.url === `/v2/${repo}/blobs/${digest}`).length;

test.serial('a pull ends READY with <id>.squashfs and <id>.meta in imageDir, and lookup/list show it', async (t) => {
  const pushed = await push(
    'team/app',
    '1.0',
    { 'etc/hello': 'hi\n', 'bin/tool': '#!/bin/sh\n' },
    {
      Env: ['PATH=/usr/bin:/bin', 'A=1'],
      Entrypoint: ['/bin/tool'],
      Cmd: ['--help'],
      WorkingDir: '/work',
      Labels: { org: 'x' },
    },
  );
  const id = pushed.manifestDigest.replace('sha256:', '');
  const rec = await pullUntilDone('team/app:1.0');
  t.is(rec.status, 'READY', String(rec.status_message));
  t.is(rec.id, id);
  t.deepEqual(rec.tag, ['team/app:1.0']);
  t.deepEqual(rec.ENV, ['PATH=/usr/bin:/bin', 'A=1']);
  t.deepEqual(rec.ENTRY, ['/bin/tool']);
  t.is(rec.WORKDIR, '/work');
  t.deepEqual(rec.LABELS, { org: 'x' });
  t.deepEqual((await readdir(imageDir)).sort(), [`${id}.chunks`, `${id}.meta`, `${id}.squashfs`]);
  t.is((await stat(join(imageDir, `${id}.chunks`))).mode & 0o777, 0o600);
  const meta = await readFile(join(imageDir, `${id}.meta`), 'utf8');
  t.regex(meta, /^FORMAT: squashfs$/m);
  t.regex(meta, /^ENTRY: \['\/bin\/tool'\]$/m);
  t.regex(meta, /^ENV: A=1$/m);
  t.is((await stat(join(imageDir, `${id}.squashfs`))).mode & 0o777, 0o600);
  const listing = execFileSync('unsquashfs', ['-l', '-d', '', join(imageDir, `${id}.squashfs`)]).toString();
  t.regex(listing, /etc\/hello/);

  const look = (await (await fetch(`${gw.url}/api/lookup/sys/docker/team/app:1.0/`, { headers: BOB })).json()) as Rec;
  t.is(look.id, id);
  const list = (await (await fetch(`${gw.url}/api/list/sys/`)).json()) as { list: Rec[] };
  t.deepEqual(
    list.list.map((r) => r.id),
    [id],
  );
  const byId = await fetch(`${gw.url}/api/lookup/sys/id/${id}/`);
  t.is(byId.status, 200);
});

test.serial(
  'a READY image younger than PullUpdateTimeout is returned at once, without asking the registry',
  async (t) => {
    const before = manifestGets('team/app');
    const rec = await pull('team/app:1.0');
    t.is(rec.status, 'READY');
    t.is(manifestGets('team/app'), before);
  },
);

test.serial('a second tag of the same image takes the meta-only path and joins the record', async (t) => {
  const again = await push(
    'team/app',
    '1.0',
    { 'etc/hello': 'hi\n', 'bin/tool': '#!/bin/sh\n' },
    {
      Env: ['PATH=/usr/bin:/bin', 'A=1'],
      Entrypoint: ['/bin/tool'],
      Cmd: ['--help'],
      WorkingDir: '/work',
      Labels: { org: 'x' },
    },
  );
  const manifest = await (
    await fetch(`${reg.url}/v2/team/app/manifests/1.0`, { headers: { accept: again.manifestMediaType } })
  ).text();
  await fetch(`${reg.url}/v2/team/app/manifests/stable`, {
    method: 'PUT',
    headers: { 'content-type': again.manifestMediaType },
    body: manifest,
  });
  const layer = again.layerDigests[0];
  const blobsBefore = blobGets('team/app', layer);
  const rec = await pullUntilDone('team/app:stable');
  t.is(rec.status, 'READY', String(rec.status_message));
  t.is(rec.id, again.manifestDigest.replace('sha256:', ''));
  t.deepEqual((rec.tag as string[]).sort(), ['team/app:1.0', 'team/app:stable']);
  t.regex(String(rec.status_message), /already on the system/);
  t.is(blobGets('team/app', layer), blobsBefore, 'no layer was downloaded again');
  const list = (await (await fetch(`${gw.url}/api/list/sys/`)).json()) as { list: Rec[] };
  t.is(list.list.length, 1);
});

test.serial('two concurrent pulls of one image share one pull', async (t) => {
  await push('team/twin', '1', { 'twin.txt': 'x'.repeat(100_000) });
  const [a, b] = await Promise.all([pull('team/twin:1'), pull('team/twin:1', BOB)]);
  t.is(a.last_pull, b.last_pull);
  const queue = (await (await fetch(`${gw.url}/api/queue/sys/`, { headers: ALICE })).json()) as { list: Rec[] };
  t.true(queue.list.filter((q) => q.image === 'team/twin:1').length <= 1);
  const done = await pullUntilDone('team/twin:1');
  t.is(done.status, 'READY', String(done.status_message));
  t.is(manifestGets('team/twin'), 1);
});

test.serial('private images: allowed_uids restricts lookup and list, and the meta file carries the ACL', async (t) => {
  const pushed = await push('team/secret', '1', { 'secret.txt': 'shh\n' });
  const id = pushed.manifestDigest.replace('sha256:', '');
  const rec = await pullUntilDone('team/secret:1', ALICE, { allowed_uids: '5' });
  t.is(rec.status, 'READY', String(rec.status_message));
  t.deepEqual(rec.userACL, [5, 1000]);
  t.regex(await readFile(join(imageDir, `${id}.meta`), 'utf8'), /^USERACL: 5,1000$/m);
  t.is((await fetch(`${gw.url}/api/lookup/sys/docker/team/secret:1/`, { headers: ALICE })).status, 200);
  t.is((await fetch(`${gw.url}/api/lookup/sys/docker/team/secret:1/`, { headers: BOB })).status, 404);
  t.is((await fetch(`${gw.url}/api/lookup/sys/docker/team/secret:1/`)).status, 404);
  const bobList = (await (await fetch(`${gw.url}/api/list/sys/`, { headers: BOB })).json()) as { list: Rec[] };
  t.false(bobList.list.some((r) => r.id === id));
});

test.serial('a corrupted layer ends in FAILURE naming the digest, and leaves nothing in imageDir', async (t) => {
  const pushed = await push('team/bad', '1', { 'big.bin': 'y'.repeat(200_000) });
  proxy.corruptBlobBodies(1000);
  t.teardown(() => proxy.corruptBlobBodies(0));
  const rec = await pullUntilDone('team/bad:1');
  proxy.corruptBlobBodies(0);
  t.is(rec.status, 'FAILURE');
  // The first corrupted blob may be the config or the layer; either way the message names it.
  const digests = [pushed.configDigest, ...pushed.layerDigests];
  t.true(
    digests.some((d) => String(rec.status_message).includes(d)),
    String(rec.status_message),
  );
  const id = pushed.manifestDigest.replace('sha256:', '');
  t.false((await readdir(imageDir)).some((f) => f.startsWith(id) || f.startsWith('.tmp-')));
  const again = await pull('team/bad:1');
  t.is(again.status, 'FAILURE', 'a fresh FAILURE is shown, not retried, until PullUpdateTimeout passes');
});

test.serial("an unknown tag ends in FAILURE with the registry's answer", async (t) => {
  const rec = await pullUntilDone('team/app:nope');
  t.is(rec.status, 'FAILURE');
  t.regex(String(rec.status_message), /nope/);
});

test.serial('a name starting with host:port pulls from that configured registry (upstream #156)', async (t) => {
  const pushed = await push('direct/app', '2', { 'etc/direct': 'yes\n' });
  // The gateway's config names reg.host with an http url (see test.before): the name works as is.
  const rec = await pullUntilDone(`${reg.host}/direct/app:2`);
  t.is(rec.status, 'READY', String(rec.status_message));
  t.is(rec.id, pushed.manifestDigest.replace('sha256:', ''));
  t.deepEqual(rec.tag, [`${reg.host}/direct/app:2`]);
});

test.serial('a registry the site did not allow is refused at once, and nothing connects to it', async (t) => {
  proxy.clearLog();
  const url = `${gw.url}/api/pull/sys/docker/${proxy.host}/direct/app:2/`;
  const res = await fetch(url, { method: 'POST', headers: ALICE });
  t.is(res.status, 403);
  const body = (await res.json()) as { error: string };
  t.is(
    body.error,
    `this gateway does not pull from ${proxy.host}; it pulls from site, ${reg.host}, localhost:*. ` +
      "Use one of those, or ask the site's admins to add the registry to Locations or AllowedRegistries",
  );
  t.is(proxy.requests.length, 0);
  const queue = (await (await fetch(`${gw.url}/api/queue/sys/`, { headers: ALICE })).json()) as { list: Rec[] };
  t.false(queue.list.some((q) => String(q.image).startsWith(proxy.host)));
});

test.serial("an allowed pattern does not reach the gateway's own host: no connection to loopback", async (t) => {
  proxy.clearLog();
  const rec = await pullUntilDone(`localhost:${new URL(proxy.url).port}/direct/app:2`);
  t.is(rec.status, 'FAILURE');
  t.regex(String(rec.status_message), /^registry host localhost resolves to an address the gateway does not connect/);
  t.is(proxy.requests.length, 0);
});
