/**
 * What the many-nodes tests share: a munged, the real gateway listening on the cluster's bridge
 * address (so the nodes' network namespaces reach it) with an image imported straight into its
 * imageDir (doimport as root, an admin), and readers of what reached the gateway (its /metrics)
 * and of what each node fetched (its chunk store).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mungeEncode } from '../../common/munge.js';
import type { Cluster } from '../helpers/cluster.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';

export const SYSTEM = 'testsys';

/** A busybox image whose /etc/os-release names it, plus `blobMiB` of random bytes a job never reads. */
export function makeImage(dir: string, osRelease: string, blobMiB: number): string {
  const root = join(dir, 'rootfs');
  mkdirSync(join(root, 'bin'), { recursive: true });
  mkdirSync(join(root, 'etc'));
  mkdirSync(join(root, 'data'));
  writeFileSync(join(root, 'bin', 'busybox'), readFileSync('/bin/busybox'), { mode: 0o755 });
  for (const applet of ['sh', 'cat', 'true']) symlinkSync('busybox', join(root, 'bin', applet));
  writeFileSync(join(root, 'etc', 'os-release'), osRelease, { mode: 0o644 });
  writeFileSync(join(root, 'data', 'blob'), randomBytes(blobMiB * 1024 * 1024), { mode: 0o644 });
  const out = join(dir, 'image.squashfs');
  execFileSync('mksquashfs', [root, out, '-all-root', '-no-xattrs', '-quiet', '-noappend'], { stdio: 'ignore' });
  chmodSync(out, 0o644);
  return out;
}

/** The gateway's imagemanager.json: images in `<dir>/gw-images`, munge, /metrics open to the bridge. */
export function clusterGatewayConfig(cluster: Cluster, dir: string, mungeSocket: string): object {
  const imageDir = join(dir, 'gw-images');
  mkdirSync(imageDir, { mode: 0o755, recursive: true });
  return {
    CacheDirectory: join(dir, 'gw-cache'),
    ExpandDirectory: join(dir, 'gw-expand'),
    Authentication: 'munge',
    WorkerThreads: 1,
    DefaultImageLocation: 'site',
    Locations: { site: { url: 'http://127.0.0.1:9' } },
    MetricsAllow: [cluster.hostAddress, '127.0.0.1'],
    Platforms: {
      [SYSTEM]: { accesstype: 'local', local: { imageDir }, mungeSocketPath: mungeSocket, admins: ['root'] },
    },
  };
}

/** The real gateway on `cluster.hostAddress` (a free port), configured by clusterGatewayConfig. */
export function clusterGateway(cluster: Cluster, dir: string, mungeSocket: string): Promise<RunningGateway> {
  return startGateway({
    dir,
    listen: `${cluster.hostAddress}:0`,
    config: clusterGatewayConfig(cluster, dir, mungeSocket),
  });
}

/** Imports `file` as custom:`tag` (root is an admin) and resolves with the image id once READY. */
export async function importImage(gwUrl: string, mungeSocket: string, file: string, tag: string): Promise<string> {
  const auth = async () => ({ authentication: await mungeEncode('', { socket: mungeSocket }) });
  const res = await fetch(`${gwUrl}/api/doimport/${SYSTEM}/custom/${tag}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(await auth()) },
    body: JSON.stringify({ filepath: file, format: 'squashfs', ENV: ['PATH=/bin:/usr/bin'] }),
  });
  if (!res.ok) throw new Error(`doimport answered ${res.status}: ${await res.text()}`);
  const deadline = Date.now() + 300_000;
  for (;;) {
    const look = await fetch(`${gwUrl}/api/lookup/${SYSTEM}/custom/${tag}/`, { headers: await auth() });
    const rec = (await look.json()) as { status?: string; id?: string };
    if (look.ok && rec.status === 'READY' && typeof rec.id === 'string') return rec.id;
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`import failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export interface GatewayCounts {
  /** Chunk answers that reached the gateway. */
  chunks: number;
  /** Image bytes the gateway's chunk route sent. */
  bytes: number;
}

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `) || l.startsWith(`${name}${labels}{`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

/** The gateway's chunk counters (`/metrics`). */
export async function gatewayCounts(gwUrl: string): Promise<GatewayCounts> {
  const res = await fetch(`${gwUrl}/metrics`);
  const text = await res.text();
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}: ${text}`);
  return {
    chunks: metric(text, 'shifter_gateway_chunk_answers_total', '{route="chunk"}'),
    bytes: metric(text, 'shifter_gateway_chunk_bytes_sent_total'),
  };
}

/** The chunks a node's store holds (chunk-store.ts: one file per chunk, named by its sha256), with sizes. */
export function storedChunks(cacheDir: string): Map<string, number> {
  const found = new Map<string, number>();
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory() && e.name !== 'mnt') walk(join(dir, e.name));
      else if (e.isFile() && /^[0-9a-f]{64}$/.test(e.name)) found.set(e.name, statSync(join(dir, e.name)).size);
    }
  };
  walk(cacheDir);
  return found;
}
