/**
 * A real gateway serving lazy images to the nodes of a test: a registry, a munged of its own, the
 * gateway (munge authentication) pulling into its own image directory only, so that every node
 * (a shifterd with lazyImageCache) reads the images lazily. Counts what reached the gateway with
 * its /metrics, and reads what a node must fetch first (superblock, metadata tables, the recorded
 * profile) from the image file the gateway made. stop() ends exactly what start() started.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { chunksCovering, parseChunkIndex, type ChunkIndex } from '../../../common/chunk-index.js';
import { serializeChunkProfile } from '../../../common/chunk-profile.js';
import type { ImageId } from '../../../common/image-descriptor.js';
import { mungeEncode } from '../../../common/munge.js';
import { SQUASHFS_SUPERBLOCK_BYTES, squashfsTables } from '../../../node-daemon/lazy/squashfs-tables.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { ShifterdFixture } from '../runtime-fixture.js';

export const SYSTEM = 'testsys';
export const OS_RELEASE = 'NAME="Lazy Linux"\nVERSION_ID="7"\n';
export const BLOB_BYTES = 12 * 1024 * 1024;

/** The chunk digests the store under `cacheDir` holds (chunk-store.ts keeps one file per chunk). */
export function storedChunks(cacheDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory() && e.name !== 'mnt') walk(join(dir, e.name));
      else if (e.isFile() && /^[0-9a-f]{64}$/.test(e.name)) found.push(e.name);
    }
  };
  walk(cacheDir);
  return found;
}

export interface PulledImage {
  id: ImageId;
  index: ChunkIndex;
  /** Incompressible, stored verbatim by mksquashfs, never read by `cat /etc/os-release`. */
  blob: Buffer;
}

export class LazyGatewayStack {
  /** Only its directory is used: the gateway's files live in it. */
  private readonly home = new ShifterdFixture();
  reg: RunningRegistry | undefined;
  munged: Munged | undefined;
  gw: RunningGateway | undefined;
  readonly imageDir = join(this.home.dir, 'gw-images');

  async start(): Promise<void> {
    this.reg = await startRegistry();
    this.munged = await startMunged();
    mkdirSync(this.imageDir, { mode: 0o755 });
    this.gw = await startGateway({
      dir: this.home.dir,
      config: {
        CacheDirectory: join(this.home.dir, 'gw-cache'),
        ExpandDirectory: join(this.home.dir, 'gw-expand'),
        Authentication: 'munge',
        WorkerThreads: 1,
        DefaultImageLocation: 'site',
        Locations: { site: { url: this.reg.url } },
        Platforms: {
          [SYSTEM]: {
            accesstype: 'local',
            local: { imageDir: this.imageDir },
            mungeSocketPath: this.munged.socket,
            admins: ['root'],
          },
        },
      },
    });
  }

  async stop(): Promise<void> {
    const steps = [() => this.gw?.stop(), () => this.munged?.stop(), () => this.reg?.stop(), () => this.home.cleanup()];
    const failures: unknown[] = [];
    for (const step of steps) await Promise.resolve(step()).catch((e: unknown) => failures.push(e));
    if (failures.length > 0) throw failures[0];
  }

  /** A munge credential made as root (this test): what a node sends. */
  credential(): Promise<string> {
    return mungeEncode('', { socket: this.munged!.socket });
  }

  /** Pushes `repo:tag` (busybox, /etc/os-release, a random blob) and pulls it through the gateway. */
  async pushAndPull(repo: string, tag: string): Promise<PulledImage> {
    const blob = randomBytes(BLOB_BYTES);
    const layer = gzipSync(
      await tarLayer([
        { name: 'bin', type: 'directory' },
        { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
        { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/cat', type: 'symlink', linkname: 'busybox' },
        { name: 'bin/sleep', type: 'symlink', linkname: 'busybox' },
        { name: 'data/blob', content: blob, mode: 0o644 },
        { name: 'etc/os-release', content: OS_RELEASE, mode: 0o644 },
      ]),
    );
    await pushImage(this.reg!.url, repo, tag, { layers: [layer], config: imageConfig({ Env: ['PATH=/bin'] }) });
    const deadline = Date.now() + 120_000;
    for (;;) {
      const res = await fetch(`${this.gw!.url}/api/pull/${SYSTEM}/docker/${repo}:${tag}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authentication: await this.credential() },
        body: '{}',
      });
      const rec = (await res.json()) as { status?: string; id?: string };
      if (rec.status === 'READY' && typeof rec.id === 'string') {
        const id = rec.id as ImageId;
        return { id, index: await this.index(id), blob };
      }
      if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  private async get(path: string): Promise<Response> {
    return fetch(`${this.gw!.url}/api/chunks/${SYSTEM}/${path}`, {
      headers: { authentication: await this.credential() },
    });
  }

  private async index(id: ImageId): Promise<ChunkIndex> {
    const facts = (await (await this.get(id)).json()) as { indexDigest: string };
    return parseChunkIndex(Buffer.from(await (await this.get(`${id}/index`)).arrayBuffer()), facts.indexDigest);
  }

  /** The image file the gateway made (its chunks are what nodes fetch). */
  imageFile(id: ImageId): Buffer {
    return readFileSync(join(this.imageDir, `${id}.squashfs`));
  }

  /** The chunks every open fetches: the superblock's and the metadata tables'. */
  openChunks(image: PulledImage): Set<number> {
    const { tablesStart, end } = squashfsTables(this.imageFile(image.id).subarray(0, SQUASHFS_SUPERBLOCK_BYTES));
    return new Set([0, ...chunksCovering(image.index, tablesStart, end - tablesStart)]);
  }

  /** The chunks that hold nothing but the blob's bytes (a cold `cat /etc/os-release` reads none). */
  blobOnlyChunks(image: PulledImage): number[] {
    const start = this.imageFile(image.id).indexOf(image.blob.subarray(0, 128 * 1024));
    if (start < 0) throw new Error('the blob is not stored verbatim in the image');
    const { chunkSize } = image.index;
    const first = Math.ceil(start / chunkSize);
    const last = Math.floor((start + image.blob.length) / chunkSize) - 1;
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  }

  /** The recorded profile's chunks, undefined when the gateway has none. */
  async profile(id: ImageId): Promise<number[] | undefined> {
    const res = await this.get(`${id}/profile`);
    if (res.status === 404) return undefined;
    if (!res.ok) throw new Error(`GET profile: ${res.status}`);
    return ((await res.json()) as { chunks: number[] }).chunks;
  }

  /** Records `chunks` as the image's profile, as a node's first cold start would. */
  async putProfile(id: ImageId, chunks: number[]): Promise<void> {
    const res = await fetch(`${this.gw!.url}/api/chunks/${SYSTEM}/${id}/profile`, {
      method: 'PUT',
      headers: { authentication: await this.credential(), 'content-type': 'application/json' },
      body: serializeChunkProfile({ version: 1, imageId: id, chunks }),
    });
    if (!res.ok) throw new Error(`PUT profile: ${res.status} ${await res.text()}`);
  }

  /** Chunk answers the gateway sent so far (its /metrics). */
  async chunkAnswers(): Promise<number> {
    const text = await (await fetch(`${this.gw!.url}/metrics`)).text();
    const m = /^shifter_gateway_chunk_answers_total\{route="chunk"\} (\d+)$/m.exec(text);
    return m === null ? 0 : Number(m[1]);
  }

  /** udiRoot.conf lines of a node whose images all come lazily from `gateway` into `cacheDir`. */
  nodeConfig(gateway: string, cacheDir: string): string[] {
    return [
      `imageGateway=${gateway}`,
      `system=${SYSTEM}`,
      `mungeSocketPath=${this.munged!.socket}`,
      `lazyImageCache=${cacheDir}`,
      'lazyImageCacheSize=1g',
    ];
  }
}
