/**
 * Eight nodes, one gateway, with a fault during the start (issue 12): the only nginx cache is
 * killed, or the gateway is restarted, while all eight nodes are fetching the chunks of an image
 * none of them has; every node's command must still finish and print what the image holds. Nodes
 * list the cache first and the gateway second in imageGateway, as a site would.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, type ClusterNode } from '../helpers/cluster.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { startNginxCache } from '../helpers/nginx-cache.js';
import { ensureTestUser } from '../node-daemon/runtime-fixture.js';
import {
  clusterGateway,
  clusterGatewayConfig,
  gatewayCounts,
  importImage,
  makeImage,
  SYSTEM,
} from './cluster-fixture.js';

const NODES = 8;
const OS_RELEASE = 'NAME="Faulty Nodes Linux"\nVERSION_ID="3"\n';
const TAG = 'faultynodes:1';
// Reads all of the 24 MiB blob first: enough chunk traffic for the fault to land during the start.
const JOB = ['sh', '-c', 'cat /data/blob > /dev/null && cat /etc/os-release'];
const user = ensureTestUser();
let dir = '';
let munged: Munged | undefined;
let cluster: Cluster | undefined;
let gw: RunningGateway | undefined;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'many-nodes-faults-'));
  munged = await startMunged();
  cluster = await Cluster.create(NODES);
  gw = await clusterGateway(cluster, dir, munged.socket);
  await importImage(gw.url, munged.socket, makeImage(dir, OS_RELEASE, 24), TAG);
});

test.after.always(async () => {
  await cluster?.destroy();
  await gw?.stop();
  await munged?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const lazyConfig = (gateways: string) => (n: ClusterNode) => [
  `imageGateway=${gateways}`,
  `system=${SYSTEM}`,
  `mungeSocketPath=${munged!.socket}`,
  `lazyImageCache=${n.cacheDir}`,
  'lazyImageCacheSize=1g',
  'lazyChunkTimeout=120',
];

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms / 1000} s`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.serial('8 nodes: the only cache is killed during the start, the nodes fall back to the gateway', async (t) => {
  const c = cluster!;
  const nginx = await startNginxCache(gw!.url, 20_000, c.hostAddress);
  t.teardown(() => nginx.stop());
  await c.restartCold(c.nodes, lazyConfig(`${nginx.url} ${gw!.url}`));
  const runs = Promise.all(c.nodes.map((n) => c.launch(n, user, [`--image=custom:${TAG}`, ...JOB])));
  await until('a chunk request through nginx', async () => /\/chunk\/[0-9a-f]{64} /.test(await nginx.accessLog()));
  // The whole cache host dies: master and workers (SIGKILL to the master alone orphans its workers).
  await nginx.kill();
  for (const [i, r] of (await runs).entries()) {
    t.is(r.code, 0, `node ${i}: ${r.stderr}\n${c.log(c.nodes[i])}`);
    t.is(r.stdout, OS_RELEASE, `node ${i}`);
  }
});

// A chunk request cut by the restart is retried within lazyChunkTimeout (node-daemon/lazy/chunk-source.ts, with
// backoff and a fresh node token: the restarted gateway forgot the old ones).
test.serial('8 nodes: the gateway is restarted during the start, the nodes retry and finish', async (t) => {
  const c = cluster!;
  await c.restartCold(c.nodes, lazyConfig(gw!.url));
  const before = (await gatewayCounts(gw!.url)).chunks;
  const runs = Promise.all(c.nodes.map((n) => c.launch(n, user, [`--image=custom:${TAG}`, ...JOB])));
  await until('a chunk answered by the gateway', async () => (await gatewayCounts(gw!.url)).chunks > before);
  // The same address and state (SQLite store, imageDir): what a gateway restarted by its service manager has.
  await gw!.kill9();
  gw = await startGateway({ dir, listen: new URL(gw!.url).host, config: clusterGatewayConfig(c, dir, munged!.socket) });
  for (const [i, r] of (await runs).entries()) {
    t.is(r.code, 0, `node ${i}: ${r.stderr}\n${c.log(c.nodes[i])}`);
    t.is(r.stdout, OS_RELEASE, `node ${i}`);
  }
});
