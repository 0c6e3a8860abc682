/**
 * The Prometheus endpoint of the real gateway process after real pulls from a real registry: pulls
 * by outcome, phase durations, bytes downloaded and written (checked against the layer blob and
 * the files in imageDir), conversions in flight and queue depth back at zero.
 */
import test from 'ava';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { startGateway, siteGatewayConfig, type RunningGateway } from '../../helpers/gateway.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';

let reg: RunningRegistry;
let gw: RunningGateway;
let dir: string;
let layerBytes: number;

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-metrics-'));
  const layer = gzipSync(await tarLayer([{ name: 'm.txt', content: 'metrics\n'.repeat(1000) }]));
  layerBytes = layer.length;
  await pushImage(reg.url, 'team/metrics', '1', { layers: [layer], config: imageConfig({}) });
  gw = await startGateway({ dir, config: siteGatewayConfig(dir, reg.url), timeoutMs: 60_000 });
});

test.after.always(async () => {
  await gw?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function pullUntilDone(tag: string): Promise<string> {
  for (let i = 0; i < 400; i++) {
    const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, { method: 'POST' });
    const rec = (await res.json()) as { status: string };
    if (rec.status === 'READY' || rec.status === 'FAILURE') return rec.status;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`the pull of ${tag} did not finish`);
}

function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  if (line === undefined) throw new Error(`no ${series} in:\n${text}`);
  return Number(line.slice(series.length + 1));
}

test('after one good and one failed pull the counters say so, and bytes match the files', async (t) => {
  t.is(await pullUntilDone('team/metrics:1'), 'READY');
  t.is(await pullUntilDone('team/metrics:nosuchtag'), 'FAILURE');
  const res = await fetch(`${gw.url}/metrics`);
  t.is(res.status, 200);
  const text = await res.text();
  t.is(sample(text, 'shifter_gateway_pulls_total{outcome="ready"}'), 1);
  t.is(sample(text, 'shifter_gateway_pulls_total{outcome="failure"}'), 1);
  t.is(sample(text, 'shifter_gateway_downloaded_bytes_total'), layerBytes, 'the one layer, over the network once');
  const images = join(dir, 'images');
  let onDisk = 0;
  for (const f of await readdir(images)) onDisk += (await stat(join(images, f))).size;
  t.is(sample(text, 'shifter_gateway_written_bytes_total'), onDisk, 'the .squashfs, .chunks and .meta');
  t.is(sample(text, 'shifter_gateway_pull_phase_seconds_count{phase="pulling"}'), 2);
  t.is(sample(text, 'shifter_gateway_pull_phase_seconds_count{phase="pending"}'), 2);
  t.is(sample(text, 'shifter_gateway_pull_phase_seconds_count{phase="conversion"}'), 1);
  t.is(sample(text, 'shifter_gateway_pull_phase_seconds_count{phase="transfer"}'), 1);
  t.true(sample(text, 'shifter_gateway_pull_phase_seconds_sum{phase="conversion"}') > 0);
  t.is(sample(text, 'shifter_gateway_conversions_in_flight'), 0);
  t.is(sample(text, 'shifter_gateway_pull_queue_depth'), 0);
  t.is(sample(text, 'shifter_gateway_pulls_running'), 0);
  t.true(sample(text, 'shifter_gateway_store_operation_seconds_count{operation="createPull"}') >= 2);
});
