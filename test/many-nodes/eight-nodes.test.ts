/**
 * Eight nodes, one gateway (issue 12): every node is a network namespace with its own shifterd,
 * lazy cache and FUSE server (test/helpers/cluster.ts); the real gateway and one nginx cache
 * (proxy_cache_lock on) listen on the bridge in the root namespace. All nodes start a job from an
 * image none of them has, at once; the gateway's /metrics tells what crossed it.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, reapLeftovers, remains } from '../helpers/cluster.js';
import type { RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { startNginxCache, type RunningNginxCache } from '../helpers/nginx-cache.js';
import { ensureTestUser } from '../node-daemon/runtime-fixture.js';
import { clusterGateway, gatewayCounts, importImage, makeImage, storedChunks, SYSTEM } from './cluster-fixture.js';

const NODES = 8;
const OS_RELEASE = 'NAME="Many Nodes Linux"\nVERSION_ID="12"\n';
const TAG = 'manynodes:1';
const user = ensureTestUser();
let dir = '';
let munged: Munged | undefined;
let cluster: Cluster | undefined;
let gw: RunningGateway | undefined;
let nginx: RunningNginxCache | undefined;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'many-nodes-test-'));
  munged = await startMunged();
  cluster = await Cluster.create(NODES);
  gw = await clusterGateway(cluster, dir, munged.socket);
  await importImage(gw.url, munged.socket, makeImage(dir, OS_RELEASE, 24), TAG);
  nginx = await startNginxCache(gw.url, 20_000, cluster.hostAddress);
});

test.after.always(async () => {
  await cluster?.destroy();
  await nginx?.stop();
  await gw?.stop();
  await munged?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test.serial(
  '8 nodes start a never-seen image at once through one nginx: each chunk crosses the gateway once',
  async (t) => {
    const c = cluster!;
    await c.startDaemons((n) => [
      `imageGateway=${nginx!.url}`,
      `system=${SYSTEM}`,
      `mungeSocketPath=${munged!.socket}`,
      `lazyImageCache=${n.cacheDir}`,
      'lazyImageCacheSize=1g',
      'lazyChunkTimeout=60',
    ]);
    const before = await gatewayCounts(gw!.url);
    const runs = await Promise.all(
      c.nodes.map((n) => c.launch(n, user, [`--image=custom:${TAG}`, 'cat', '/etc/os-release'])),
    );
    for (const [i, r] of runs.entries()) {
      t.is(r.code, 0, `node ${i}: ${r.stderr}\n${c.log(c.nodes[i])}`);
      t.is(r.stdout, OS_RELEASE, `node ${i}`);
    }
    const after = await gatewayCounts(gw!.url);
    const fetched = new Map<string, number>();
    for (const n of c.nodes) for (const [sha, size] of storedChunks(n.cacheDir)) fetched.set(sha, size);
    const workingSet = [...fetched.values()].reduce((a, b) => a + b, 0);
    const chunks = after.chunks - before.chunks;
    const bytes = after.bytes - before.bytes;
    t.log(
      `${fetched.size} distinct chunks (${workingSet} bytes) on ${NODES} nodes; gateway: ${chunks} chunk answers, ${bytes} bytes`,
    );
    t.true(fetched.size > 0);
    t.is(chunks, fetched.size, 'every distinct chunk reached the gateway exactly once');
    t.true(bytes <= 1.1 * workingSet, `gateway sent ${bytes} bytes for a working set of ${workingSet}`);
  },
);

test.serial('a run killed with SIGKILL leaves its nodes running; reapLeftovers() removes all of it', async (t) => {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'crashing-run.js');
  const child = spawn(process.execPath, [script, gw!.url, munged!.socket, `custom:${TAG}`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const line = await new Promise<string>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]);
    });
    child.once('exit', (code) => reject(new Error(`the crashing run exited ${code} first: ${err}`)));
  });
  const run = JSON.parse(line) as { run: string; dir: string; inodes: number[] };
  const inodes = new Set(run.inodes);
  child.kill('SIGKILL');
  await exited;
  const left = await remains(run.run, run.dir, inodes);
  t.log(left.join('\n'));
  for (const kind of ['network namespace', 'link', 'mount', 'loop device', 'process']) {
    t.true(
      left.some((l) => l.startsWith(kind)),
      `the killed run left a ${kind} behind (what reapLeftovers must remove)`,
    );
  }
  t.true((await reapLeftovers()).includes(run.run));
  t.deepEqual(await remains(run.run, run.dir, inodes), []);
});

test.serial(
  'after the run nothing of it is left: no namespace, link, FUSE mount, loop device or process',
  async (t) => {
    const c = cluster!;
    const mounted = await c.leftovers();
    t.true(
      mounted.some((l) => l.startsWith('network namespace')),
      'the cluster was up before the check',
    );
    await c.destroy();
    t.deepEqual(await c.leftovers(), []);
  },
);
