/**
 * Crash safety: the gateway is killed with SIGKILL while a pull is stuck downloading (the proxy
 * stalls the blob), then restarted on the same directories. It must never report READY for
 * an image whose files are missing, and the interrupted pull must resume (or fail clearly).
 */
import test from 'ava';
import { access, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { randomBytes } from 'node:crypto';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';
import { siteGatewayConfig, startGateway, type RunningGateway } from '../../helpers/gateway.js';

let reg: RunningRegistry;
let proxy: FlakyProxy;
let dir: string;
const gateways: RunningGateway[] = [];

test.before(async () => {
  reg = await startRegistry();
  proxy = await startFlakyProxy(reg.url);
  dir = await mkdtemp(join(tmpdir(), 'gw-crash-'));
});

test.after.always(async () => {
  for (const g of gateways) await g.kill9();
  await proxy?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

type Rec = Record<string, unknown>;

const config = () => siteGatewayConfig(dir, proxy.url);

async function start(): Promise<RunningGateway> {
  const g = await startGateway({ dir, config: config() });
  gateways.push(g);
  return g;
}

async function pull(g: RunningGateway, tag: string): Promise<Rec> {
  const res = await fetch(`${g.url}/api/pull/sys/docker/${tag}/`, {
    method: 'POST',
    headers: { authentication: 'good:alice:users::1000:100' },
  });
  return (await res.json()) as Rec;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

test.serial('kill -9 during a download, restart: the pull resumes to READY with complete files', async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'data.bin', content: randomBytes(300_000).toString('hex') }]));
  const pushed = await pushImage(reg.url, 'team/crash', '1', {
    layers: [layer],
    config: imageConfig({ Env: ['X=1'] }),
  });
  const id = pushed.manifestDigest.replace('sha256:', '');

  proxy.stallBlobBodies(1);
  const g1 = await start();
  const first = await pull(g1, 'team/crash:1');
  t.is(first.status, 'PENDING');
  let seen: Rec = first;
  for (let i = 0; i < 100 && !String(seen.status_message).startsWith('Pulling layer'); i++) {
    await new Promise((r) => setTimeout(r, 100));
    seen = await pull(g1, 'team/crash:1');
  }
  t.is(seen.status, 'PULLING', 'the pull is stuck downloading when the gateway is killed');
  // A leftover temp file in imageDir, as a transfer cut short by the kill would leave.
  await writeFile(join(dir, 'images', `.tmp-${id}.squashfs.deadbeef`), 'partial');
  await g1.kill9();

  const g2 = await start();
  t.false(await exists(join(dir, 'images', `.tmp-${id}.squashfs.deadbeef`)), 'temp files are cleaned at startup');
  let rec: Rec = {};
  for (let i = 0; i < 200; i++) {
    const look = await fetch(`${g2.url}/api/lookup/sys/docker/team/crash:1/`);
    if (look.status === 200) {
      rec = (await look.json()) as Rec;
      t.true(await exists(join(dir, 'images', `${id}.squashfs`)), 'READY implies the image file exists');
      t.true(await exists(join(dir, 'images', `${id}.meta`)), 'READY implies the meta file exists');
      break;
    }
    const queued = await fetch(`${g2.url}/api/queue/sys/`, {
      headers: { authentication: 'good:alice:users::1000:100' },
    });
    rec = ((await queued.json()) as { list: Rec[] }).list[0] ?? rec;
    await new Promise((r) => setTimeout(r, 150));
  }
  t.is(rec.id, id, JSON.stringify(rec));
  t.regex(g2.logs(), /resuming an interrupted pull/);
  await g2.stop();
});

test.serial('a READY record whose files vanished is reported FAILURE after a restart, then re-pulls', async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'f.txt', content: 'f\n' }]));
  const pushed = await pushImage(reg.url, 'team/gone', '1', { layers: [layer], config: imageConfig({}) });
  const id = pushed.manifestDigest.replace('sha256:', '');
  const g1 = await start();
  let rec: Rec = {};
  for (let i = 0; i < 200 && rec.status !== 'READY'; i++) {
    rec = await pull(g1, 'team/gone:1');
    if (rec.status === 'FAILURE') break;
    await new Promise((r) => setTimeout(r, 150));
  }
  t.is(rec.status, 'READY', String(rec.status_message));
  await g1.kill9();
  await rm(join(dir, 'images', `${id}.squashfs`));

  const g2 = await start();
  t.is((await fetch(`${g2.url}/api/lookup/sys/docker/team/gone:1/`)).status, 404, 'never READY with a missing file');
  rec = await pull(g2, 'team/gone:1');
  t.not(rec.status, 'READY');
  for (let i = 0; i < 200 && rec.status !== 'READY'; i++) {
    rec = await pull(g2, 'team/gone:1');
    await new Promise((r) => setTimeout(r, 150));
  }
  t.is(rec.status, 'READY');
  t.true((await readdir(join(dir, 'images'))).includes(`${id}.squashfs`));
  await g2.stop();
});

test.serial(
  'SIGTERM stops the gateway cleanly (exit 0) and the interrupted pull resumes at the next start',
  async (t) => {
    const layer = gzipSync(await tarLayer([{ name: 'term.bin', content: randomBytes(200_000).toString('hex') }]));
    const pushed = await pushImage(reg.url, 'team/term', '1', { layers: [layer], config: imageConfig({}) });
    proxy.stallBlobBodies(1);
    const g1 = await start();
    let rec = await pull(g1, 'team/term:1');
    for (let i = 0; i < 100 && !String(rec.status_message).startsWith('Pulling layer'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      rec = await pull(g1, 'team/term:1');
    }
    t.is(rec.status, 'PULLING');
    t.is(await g1.stop(), 0);
    t.regex(g1.logs(), /pull interrupted by shutdown; it resumes at the next start/);
    const g2 = await start();
    for (let i = 0; i < 200 && rec.status !== 'READY'; i++) {
      const look = await fetch(`${g2.url}/api/lookup/sys/docker/team/term:1/`);
      if (look.status === 200) rec = (await look.json()) as Rec;
      else await new Promise((r) => setTimeout(r, 150));
    }
    t.is(rec.id, pushed.manifestDigest.replace('sha256:', ''));
    await g2.stop();
  },
);
