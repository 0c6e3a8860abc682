/**
 * Builds OCI image layouts for tests, with layer tars written entry by entry (tar-stream), so a
 * test can craft anything a hostile or unusual image may hold: whiteouts, opaque directories,
 * hard links into lower layers, setuid bits, long unicode names, `..` paths, device nodes.
 *
 *   const img = await buildImage(dir, { layers: [{ entries: [file('etc/hosts', 'x')] }], config: { cmd: ['sh'] } });
 *   await pushWithSkopeo(img.layoutDir, img.tag, '127.0.0.1:5000', 'test/repo');
 *
 * `img.layers` are LayerFile records (blob path, media type, digest) ready for the converter.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdir, writeFile, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import { createGzip, gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';

type TarHeader = Partial<tar.Header> & { name: string };
import type { LayerFile } from '../../gateway/convert/squashfs.js';

const run = promisify(execFile);

export interface EntryAttrs {
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
}

export type EntrySpec =
  | ({ type: 'file'; path: string; content?: string | Buffer } & EntryAttrs)
  | ({ type: 'dir'; path: string } & EntryAttrs)
  | ({ type: 'symlink'; path: string; target: string } & EntryAttrs)
  /** A tar hard link: `target` names an entry earlier in this layer or in a lower layer. */
  | ({ type: 'hardlink'; path: string; target: string } & EntryAttrs)
  /** `.wh.<basename of path>` in path's directory: removes path from lower layers. */
  | { type: 'whiteout'; path: string }
  /** `<path>/.wh..wh..opq`: hides what lower layers hold inside directory `path`. */
  | { type: 'opaque'; path: string }
  | ({ type: 'fifo' | 'character-device' | 'block-device'; path: string; major?: number; minor?: number } & EntryAttrs)
  /** Any header exactly as given (raw names such as `../x` or `/etc/x`). */
  | { type: 'raw'; header: TarHeader; content?: Buffer };

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export type LayerSpec =
  | { entries: EntrySpec[]; compression?: LayerCompression }
  /** A blob used byte for byte (e.g. a corrupt or truncated layer), with the media type to claim. */
  | { blob: Buffer; compression: LayerCompression };

export interface ImageConfigSpec {
  entrypoint?: string[] | null;
  cmd?: string[] | null;
  env?: string[];
  workingDir?: string;
  labels?: Record<string, string>;
  user?: string;
}

export interface BuiltImage {
  layoutDir: string;
  tag: string;
  manifestDigest: string;
  configDigest: string;
  /** Bottom to top, blob paths inside the layout. */
  layers: LayerFile[];
}

export const file = (path: string, content: string | Buffer = '', attrs: EntryAttrs = {}): EntrySpec => ({
  type: 'file',
  path,
  content,
  ...attrs,
});
export const dir = (path: string, attrs: EntryAttrs = {}): EntrySpec => ({ type: 'dir', path, ...attrs });
export const symlink = (path: string, target: string, attrs: EntryAttrs = {}): EntrySpec => ({
  type: 'symlink',
  path,
  target,
  ...attrs,
});
export const hardlink = (path: string, target: string, attrs: EntryAttrs = {}): EntrySpec => ({
  type: 'hardlink',
  path,
  target,
  ...attrs,
});
export const whiteout = (path: string): EntrySpec => ({ type: 'whiteout', path });
export const opaque = (path: string): EntrySpec => ({ type: 'opaque', path });

const MEDIA: Record<LayerCompression, string> = {
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  none: 'application/vnd.oci.image.layer.v1.tar',
};

const FIXED_TIME = new Date('2024-01-02T03:04:05Z');

function headerFor(e: Exclude<EntrySpec, { type: 'raw' }>): { header: TarHeader; content?: Buffer } {
  const base = (a: EntryAttrs, mode: number) => ({
    mode: a.mode ?? mode,
    uid: a.uid ?? 0,
    gid: a.gid ?? 0,
    mtime: a.mtime ?? FIXED_TIME,
  });
  const parentOf = (p: string) => (p.includes('/') ? p.slice(0, p.lastIndexOf('/') + 1) : '');
  const baseName = (p: string) => p.slice(p.lastIndexOf('/') + 1);
  switch (e.type) {
    case 'file': {
      const content = typeof e.content === 'string' ? Buffer.from(e.content) : (e.content ?? Buffer.alloc(0));
      return { header: { name: e.path, type: 'file', size: content.length, ...base(e, 0o644) }, content };
    }
    case 'dir':
      return { header: { name: e.path, type: 'directory', ...base(e, 0o755) } };
    case 'symlink':
      return { header: { name: e.path, type: 'symlink', linkname: e.target, ...base(e, 0o777) } };
    case 'hardlink':
      return { header: { name: e.path, type: 'link', linkname: e.target, ...base(e, 0o644) } };
    case 'whiteout':
      return {
        header: { name: `${parentOf(e.path)}.wh.${baseName(e.path)}`, type: 'file', size: 0, ...base({}, 0o644) },
      };
    case 'opaque':
      return {
        header: { name: `${e.path.replace(/\/$/, '')}/.wh..wh..opq`, type: 'file', size: 0, ...base({}, 0o644) },
      };
    default:
      return {
        header: { name: e.path, type: e.type, devmajor: e.major ?? 1, devminor: e.minor ?? 3, ...base(e, 0o644) },
      };
  }
}

/** The uncompressed tar of a layer. */
export async function layerTar(entries: EntrySpec[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => {
      chunks.push(c as Buffer);
    });
    pack.on('end', () => resolve());
    pack.on('error', reject);
  });
  for (const e of entries) {
    const { header, content } = e.type === 'raw' ? { header: e.header, content: e.content } : headerFor(e);
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      const isFile = header.type === undefined || header.type === 'file' || header.type === 'contiguous-file';
      if (content || isFile) pack.entry(header, content ?? Buffer.alloc(0), cb);
      else pack.entry(header, cb);
    });
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

async function compress(data: Buffer, how: LayerCompression): Promise<Buffer> {
  if (how === 'none') return data;
  if (how === 'gzip') return gzipSync(data, { level: 1 });
  return new Promise((resolve, reject) => {
    const child = execFile('zstd', ['-q', '-3', '-c'], { encoding: 'buffer', maxBuffer: 1 << 30 }, (err, stdout) =>
      err ? reject(err) : resolve(stdout),
    );
    child.stdin!.end(data);
  });
}

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function putBlob(
  layoutDir: string,
  data: Buffer | string,
): Promise<{ digest: string; size: number; path: string }> {
  const digest = sha256(data);
  const path = join(layoutDir, 'blobs', 'sha256', digest.slice(7));
  await writeFile(path, data);
  return { digest, size: Buffer.byteLength(data), path };
}

/** Writes an OCI image layout at `layoutDir` (created) holding one image tagged `tag`. */
export async function buildImage(
  layoutDir: string,
  spec: { layers: LayerSpec[]; config?: ImageConfigSpec; tag?: string },
): Promise<BuiltImage> {
  const tag = spec.tag ?? 'latest';
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const layers: LayerFile[] = [];
  const descriptors: { mediaType: string; digest: string; size: number }[] = [];
  const diffIds: string[] = [];
  for (const l of spec.layers) {
    const raw = 'blob' in l ? l.blob : await layerTar(l.entries);
    const compression = l.compression ?? 'gzip';
    const blob = 'blob' in l ? l.blob : await compress(raw, compression);
    const put = await putBlob(layoutDir, blob);
    diffIds.push(sha256(raw));
    descriptors.push({ mediaType: MEDIA[compression], digest: put.digest, size: put.size });
    layers.push({ path: put.path, mediaType: MEDIA[compression], digest: put.digest });
  }
  const c = spec.config ?? {};
  const config = {
    architecture: 'amd64',
    os: 'linux',
    created: FIXED_TIME.toISOString(),
    config: {
      ...(c.entrypoint !== undefined ? { Entrypoint: c.entrypoint } : {}),
      ...(c.cmd !== undefined ? { Cmd: c.cmd } : {}),
      ...(c.env ? { Env: c.env } : {}),
      ...(c.workingDir ? { WorkingDir: c.workingDir } : {}),
      ...(c.labels ? { Labels: c.labels } : {}),
      ...(c.user ? { User: c.user } : {}),
    },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: diffIds.map(() => ({ created: FIXED_TIME.toISOString(), created_by: 'test/helpers/oci-image.ts' })),
  };
  const cfg = await putBlob(layoutDir, JSON.stringify(config));
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg.digest, size: cfg.size },
    layers: descriptors,
  });
  const man = await putBlob(layoutDir, manifest);
  const indexPath = join(layoutDir, 'index.json');
  const existing = await readFile(indexPath, 'utf8')
    .then((t) => JSON.parse(t) as { manifests: unknown[] })
    .catch(() => ({ manifests: [] as unknown[] }));
  const manifests = (existing.manifests as { annotations?: Record<string, string> }[]).filter(
    (m) => m.annotations?.['org.opencontainers.image.ref.name'] !== tag,
  );
  manifests.push({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    digest: man.digest,
    size: man.size,
    annotations: { 'org.opencontainers.image.ref.name': tag },
  } as never);
  await writeFile(indexPath, JSON.stringify({ schemaVersion: 2, manifests }));
  return { layoutDir, tag, manifestDigest: man.digest, configDigest: cfg.digest, layers };
}

/** `skopeo copy` of the layout's `tag` to `docker://<registry>/<repo>:<tag>` over plain http. */
export async function pushWithSkopeo(
  layoutDir: string,
  tag: string,
  registryHostPort: string,
  repo = 'test/image',
): Promise<void> {
  await run(
    'skopeo',
    [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${layoutDir}:${tag}`,
      `docker://${registryHostPort}/${repo}:${tag}`,
    ],
    { maxBuffer: 1 << 24 },
  );
}

/** `umoci unpack` of the layout's `tag` into `<bundleDir>/rootfs` (as root: owners kept). */
export async function umociUnpack(layoutDir: string, tag: string, bundleDir: string): Promise<string> {
  await rm(bundleDir, { recursive: true, force: true });
  await run('umoci', ['unpack', '--image', `${layoutDir}:${tag}`, bundleDir], { maxBuffer: 1 << 24 });
  return join(bundleDir, 'rootfs');
}

/** One ustar header block (no data), written by hand: tar-stream is too slow for millions of entries. */
function ustarHeader(name: string, type: 'file' | 'dir', size = 0): Buffer {
  const h = Buffer.alloc(512);
  const octal = (v: number, len: number) => v.toString(8).padStart(len - 1, '0') + '\0';
  h.write(name, 0, 100, 'utf8');
  h.write(octal(type === 'dir' ? 0o755 : 0o644, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(Math.floor(FIXED_TIME.getTime() / 1000), 12), 136);
  h.write('        ', 148);
  h.write(type === 'dir' ? '5' : '0', 156);
  h.write('ustar\0' + '00', 257);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148);
  return h;
}

/**
 * A gzip layer of `files` empty files, `perDir` to a directory (`d<n>/f<m>`), generated as a tar
 * stream: a million entries take a few seconds and a few MB of blob (an "inode bomb").
 */
export async function emptyFilesLayer(files: number, perDir = 1000): Promise<Buffer> {
  function* blocks(): Generator<Buffer> {
    const batch: Buffer[] = [];
    for (let i = 0; i < files; i++) {
      const d = Math.floor(i / perDir);
      if (i % perDir === 0) batch.push(ustarHeader(`d${d}/`, 'dir'));
      batch.push(ustarHeader(`d${d}/f${i % perDir}`, 'file'));
      if (batch.length >= 2048) yield Buffer.concat(batch.splice(0));
    }
    batch.push(Buffer.alloc(1024));
    yield Buffer.concat(batch);
  }
  return gzipStream(blocks());
}

/** A gzip layer holding one file of `size` zero bytes: a "gzip bomb" of about size/1000 bytes. */
export async function zeroFileLayer(name: string, size: number): Promise<Buffer> {
  function* blocks(): Generator<Buffer> {
    yield ustarHeader(name, 'file', size);
    const chunk = Buffer.alloc(1 << 20);
    for (let left = size; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
    yield Buffer.alloc(512 - (size % 512 || 512) + 1024);
  }
  return gzipStream(blocks());
}

async function gzipStream(blocks: Iterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const gz = Readable.from(blocks).pipe(createGzip({ level: 1 }));
  for await (const c of gz) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
