/**
 * The many-nodes figures (issue 12), driven by bench/many-nodes.sh. One cluster of the largest N
 * (test/helpers/cluster.ts: a network namespace per node, its own shifterd and FUSE server), the real
 * gateway and munged in the root namespace, the image imported into the gateway (doimport). For each
 * N and each mode, the first N nodes start from a cold node (empty chunk store, shifterd restarted)
 * and fresh nginx caches; then every node runs the job at once. Per round: time from "all nodes
 * start" to "all commands exited", and what reached the gateway (its /metrics chunk counters).
 * Modes:
 *   copy            each node first fetches every chunk of the image from the gateway
 *                   (`shifterd-cache stage`, in the timed part), then runs: a whole-file copy per node
 *   lazy-direct     lazy, every node straight to the gateway
 *   lazy-cache      lazy, through one nginx cache (proxy_cache_lock) in front of the gateway
 *   lazy-2level     lazy, a per-rack nginx (RACK nodes each) in front of a site nginx in front of the gateway
 *   lazy-prestaged  through the site nginx, `shifterd-cache stage --profile` on every node before the
 *                   start (what the Slurm prolog does: superblock, tables and the recorded profile's
 *                   chunks), untimed but its duration and gateway bytes are reported
 * Before the rounds one node's cold start records the image's prefetch profile, so every lazy round
 * runs as a job would on an image that ran once before. N values whose nodes do not fit in memory
 * (measured per node in the first round) are skipped, saying so.
 * Usage: node dist/bench/many-nodes.js --image FILE --nodes 1,8,32,64 --out DIR [--modes m,m] -- COMMAND...
 */
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, type ClusterNode } from '../test/helpers/cluster.js';
import type { RunningGateway } from '../test/helpers/gateway.js';
import { startMunged, type Munged } from '../test/helpers/munge.js';
import { startNginxCache, type RunningNginxCache } from '../test/helpers/nginx-cache.js';
import { ensureTestUser } from '../test/node-daemon/runtime-fixture.js';
import {
  clusterGateway,
  gatewayCounts,
  importImage,
  storedChunks,
  SYSTEM,
} from '../test/many-nodes/cluster-fixture.js';

const MODES = ['copy', 'lazy-direct', 'lazy-cache', 'lazy-2level', 'lazy-prestaged'] as const;
type Mode = (typeof MODES)[number];
const RACK = 8;
const TAG = 'manynodes-bench:1';
const IMAGE = `custom:${TAG}`;

interface Args {
  image: string;
  nodes: number[];
  out: string;
  modes: Mode[];
  command: string[];
}

function usage(why: string): never {
  process.stderr.write(
    `many-nodes: ${why}\nusage: many-nodes.js --image FILE --nodes 1,8,32 --out DIR [--modes ${MODES.join(',')}] ` +
      '-- COMMAND...\n',
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const args: Partial<Args> = { modes: [...MODES] };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = (): string => argv[++i] ?? usage(`${flag} needs a value`);
    if (flag === '--image') args.image = value();
    else if (flag === '--out') args.out = value();
    else if (flag === '--nodes') {
      args.nodes = value()
        .split(',')
        .map((n) => (/^[1-9]\d*$/.test(n) ? Number(n) : usage(`--nodes: "${n}" is not a positive whole number`)));
    } else if (flag === '--modes') {
      args.modes = value()
        .split(',')
        .map((m) => ((MODES as readonly string[]).includes(m) ? (m as Mode) : usage(`--modes: unknown mode "${m}"`)));
    } else if (flag === '--') {
      args.command = argv.slice(i + 1);
      break;
    } else usage(`unknown argument "${flag}"`);
  }
  if (!args.image || !args.out || !args.nodes || !args.command?.length) usage('--image, --out, --nodes and a command');
  return args as Args;
}

function memAvailable(): number {
  const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

function load1(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
}

const MiB = (b: number): string => (b / 1048576).toFixed(1);

class Bench {
  private perNode = 0;

  constructor(
    private readonly args: Args,
    private readonly cluster: Cluster,
    private readonly gw: RunningGateway,
    private readonly munged: Munged,
    private readonly user: { uid: number; gid: number },
  ) {}

  private config(node: ClusterNode, source: string): string[] {
    return [
      `imageGateway=${source}`,
      `system=${SYSTEM}`,
      `mungeSocketPath=${this.munged.socket}`,
      `lazyImageCache=${node.cacheDir}`,
      'lazyImageCacheSize=4g',
      'lazyChunkTimeout=300',
      // N nodes' daemons on 2 shared cores load this machine far beyond a real gateway's: lookups
      // (one per node, never cached) waited past the default 30 s at N = 32.
      'gatewayTimeout=300',
    ];
  }

  private async launchAll(nodes: ClusterNode[], before?: (n: ClusterNode) => Promise<void>): Promise<number> {
    const t0 = performance.now();
    const results = await Promise.all(
      nodes.map(async (n) => {
        await before?.(n);
        return this.cluster.launch(n, this.user, [`--image=${IMAGE}`, ...this.args.command]);
      }),
    );
    const ms = performance.now() - t0;
    for (const [i, r] of results.entries()) {
      if (r.code !== 0) {
        const log = this.cluster.log(nodes[i]).split('\n').slice(-20).join('\n');
        throw new Error(`node ${i}: the command exited ${r.code}: ${r.stderr}\nshifterd's log ends:\n${log}`);
      }
    }
    return ms;
  }

  /** One node's cold start records the image's prefetch profile (sent 10 s after the first open). */
  async recordProfile(): Promise<void> {
    const node = this.cluster.nodes[0];
    await this.cluster.restartCold([node], (n) => this.config(n, this.gw.url));
    await this.launchAll([node]);
    const deadline = Date.now() + 120_000;
    while (!/prefetch profile (already )?recorded/.test(this.cluster.log(node))) {
      if (Date.now() > deadline) throw new Error(`no prefetch profile was recorded:\n${this.cluster.log(node)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    this.perNode = this.cluster.memory(node);
    await this.cluster.stopDaemon(node);
  }

  fits(n: number): boolean {
    return n * this.perNode * 1.3 < memAvailable();
  }

  get memoryPerNode(): number {
    return this.perNode;
  }

  async round(n: number, mode: Mode): Promise<string> {
    const nodes = this.cluster.nodes.slice(0, n);
    const host = this.cluster.hostAddress;
    const caches: RunningNginxCache[] = [];
    try {
      let source = (_: ClusterNode): string => this.gw.url;
      if (mode === 'lazy-cache' || mode === 'lazy-prestaged' || mode === 'lazy-2level') {
        const site = await startNginxCache(this.gw.url, 20_000, host);
        caches.push(site);
        source = () => site.url;
        if (mode === 'lazy-2level') {
          const racks: RunningNginxCache[] = [];
          for (let r = 0; r < Math.ceil(n / RACK); r++) racks.push(await startNginxCache(site.url, 20_000, host));
          caches.push(...racks);
          source = (node) => racks[Math.floor(node.index / RACK)].url;
        }
      }
      await this.cluster.restartCold(nodes, (node) => this.config(node, source(node)));
      const before = await gatewayCounts(this.gw.url);
      let stageMs = 0;
      if (mode === 'lazy-prestaged') {
        const t0 = performance.now();
        await Promise.all(nodes.map((node) => this.cluster.stage(node, IMAGE, 'profile')));
        stageMs = performance.now() - t0;
      }
      const stage = mode === 'copy' ? (node: ClusterNode) => this.cluster.stage(node, IMAGE) : undefined;
      const ms = await this.launchAll(nodes, stage);
      const after = await gatewayCounts(this.gw.url);
      const distinct = new Map<string, number>();
      for (const node of nodes) for (const [sha, size] of storedChunks(node.cacheDir)) distinct.set(sha, size);
      const distinctBytes = [...distinct.values()].reduce((a, b) => a + b, 0);
      const mem = Math.max(...nodes.map((node) => this.cluster.memory(node)));
      this.perNode = Math.max(this.perNode, mem);
      const row = [
        n,
        mode,
        Math.round(ms),
        Math.round(stageMs),
        after.chunks - before.chunks,
        after.bytes - before.bytes,
        distinctBytes,
        mem,
        load1(),
      ];
      console.log(
        `  N=${String(n).padStart(3)} ${mode.padEnd(15)} ${(ms / 1000).toFixed(2).padStart(8)} s` +
          (mode === 'lazy-prestaged' ? ` (stage ${(stageMs / 1000).toFixed(2)} s before)` : '') +
          `  gateway ${MiB(after.bytes - before.bytes)} MiB in ${after.chunks - before.chunks} chunks,` +
          ` nodes hold ${MiB(distinctBytes)} MiB distinct, ${MiB(mem)} MiB RSS per node, load ${load1()}`,
      );
      return row.join('\t');
    } finally {
      await Promise.all(nodes.map((node) => this.cluster.stopDaemon(node)));
      for (const c of caches) await c.stop();
    }
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.out, { recursive: true });
  const tsv = join(args.out, 'results.tsv');
  writeFileSync(tsv, 'nodes\tmode\tms\tstage_ms\tgw_chunks\tgw_bytes\tdistinct_bytes\trss_per_node\tload1\n');
  const user = ensureTestUser();
  let munged: Munged | undefined;
  let cluster: Cluster | undefined;
  let gw: RunningGateway | undefined;
  const failures: string[] = [];
  try {
    munged = await startMunged();
    cluster = await Cluster.create(Math.max(...args.nodes));
    gw = await clusterGateway(cluster, join(args.out, 'gateway'), munged.socket);
    const id = await importImage(gw.url, munged.socket, args.image, TAG);
    console.log(`image ${IMAGE} = id ${id}, imported into the gateway`);
    const bench = new Bench(args, cluster, gw, munged, user);
    await bench.recordProfile();
    console.log(`prefetch profile recorded; one node (shifterd + FUSE server) holds ${MiB(bench.memoryPerNode)} MiB`);
    for (const n of args.nodes) {
      if (!bench.fits(n)) {
        const need = (n * bench.memoryPerNode * 1.3) / 1048576;
        console.log(`  N=${n} skipped: ~${need.toFixed(0)} MiB needed, ${MiB(memAvailable())} MiB available`);
        continue;
      }
      for (const mode of args.modes) {
        try {
          appendFileSync(tsv, (await bench.round(n, mode)) + '\n');
        } catch (e) {
          // One failed round (reported, absent from the table) does not cost the others.
          failures.push(`N=${n} ${mode}: ${e instanceof Error ? e.message : String(e)}`);
          console.log(`  N=${String(n).padStart(3)} ${mode.padEnd(15)} FAILED: ${failures.at(-1)}`);
        }
      }
    }
  } finally {
    await cluster?.destroy();
    await gw?.stop();
    await munged?.stop();
  }
  if (failures.length > 0) throw new Error(`${failures.length} round(s) failed:\n${failures.join('\n')}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`many-nodes: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
