/**
 * An image that brings the gateway down while converting must not bring it down at every start:
 * the gateway is killed (SIGKILL, as an out-of-memory crash would) during CONVERSION of the same
 * pull twice; the first restart resumes the pull, the second marks it FAILURE saying why, and
 * does not convert it again.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { emptyFilesLayer } from '../../helpers/oci-image.js';
import { imageConfig, pushImage, startRegistry, type RunningRegistry } from '../../helpers/registry.js';
import { siteGatewayConfig, startGateway, type RunningGateway } from '../../helpers/gateway.js';

let reg: RunningRegistry;
let dir: string;
const gateways: RunningGateway[] = [];

type Rec = Record<string, unknown>;

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-conv-crash-'));
});

test.after.always(async () => {
  for (const g of gateways) await g.kill9();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningGateway> {
  const g = await startGateway({ dir, config: siteGatewayConfig(dir, reg.url) });
  gateways.push(g);
  return g;
}

async function queue(g: RunningGateway): Promise<Rec[]> {
  // The queue answers authenticated callers only; alice pulled the image, so she sees its pull.
  const res = await fetch(`${g.url}/api/queue/sys/`, { headers: { authentication: 'good:alice:users::1000:100' } });
  return ((await res.json()) as { list: Rec[] }).list;
}

/** Polls the pull record (POST /api/pull returns the record in flight) until `status`. */
async function waitFor(g: RunningGateway, tag: string, status: string): Promise<Rec> {
  let rec: Rec = {};
  for (let i = 0; i < 1200 && rec.status !== status; i++) {
    const res = await fetch(`${g.url}/api/pull/sys/docker/${tag}/`, {
      method: 'POST',
      headers: { authentication: 'good:alice:users::1000:100' },
    });
    rec = (await res.json()) as Rec;
    if (rec.status === 'READY' || (rec.status === 'FAILURE' && status !== 'FAILURE')) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return rec;
}

test.serial('killed twice while converting the same pull: resumed once, then FAILURE with the reason', async (t) => {
  // Big enough that converting it takes seconds, so the kill lands during CONVERSION.
  await pushImage(reg.url, 'team/heavy', '1', { layers: [await emptyFilesLayer(150_000)], config: imageConfig({}) });

  const g1 = await start();
  t.is((await waitFor(g1, 'team/heavy:1', 'CONVERSION')).status, 'CONVERSION');
  await g1.kill9();

  const g2 = await start();
  t.regex(g2.logs(), /resuming an interrupted pull/);
  t.is((await waitFor(g2, 'team/heavy:1', 'CONVERSION')).status, 'CONVERSION', 'the first crash is forgiven');
  await g2.kill9();

  const g3 = await start();
  const rec = (await queue(g3)).find((r) => r.image === 'team/heavy:1');
  t.is(rec?.status, 'FAILURE', JSON.stringify(rec));
  const failed = await waitFor(g3, 'team/heavy:1', 'FAILURE');
  t.is(failed.status, 'FAILURE');
  t.regex(String(failed.status_message), /the gateway stopped twice while converting this image/);
  t.notRegex(g3.logs(), /resuming an interrupted pull/);
  t.regex(g3.logs(), /not resuming a pull the gateway stopped under twice/);
  await g3.stop();
});

test.serial('a clean SIGTERM during conversion does not count as a crash', async (t) => {
  await pushImage(reg.url, 'team/stopped', '1', { layers: [await emptyFilesLayer(150_001)], config: imageConfig({}) });

  const g1 = await start();
  t.is((await waitFor(g1, 'team/stopped:1', 'CONVERSION')).status, 'CONVERSION');
  t.is(await g1.stop(), 0);

  const g2 = await start();
  t.is((await waitFor(g2, 'team/stopped:1', 'CONVERSION')).status, 'CONVERSION');
  await g2.kill9();

  const g3 = await start();
  t.regex(g3.logs(), /resuming an interrupted pull/, 'one crash and one clean stop: resumed');
  t.not((await queue(g3)).find((r) => r.image === 'team/stopped:1')?.status, 'FAILURE');
  await g3.kill9();
});
