/**
 * A real HTTP server speaking the gateway's chunk routes (common/chunk-index.ts) for a real
 * squashfs image: the image facts (index digest and `.meta`), the index, chunks by sha256, a
 * prefetch profile (GET/PUT). The lookup route answers for `lookupTag` (docker:, public,
 * PATH=/bin) as the gateway would. Faults on demand:
 * `down` closes every connection unanswered, `corrupt` serves wrong bytes for the listed chunks
 * (`corruptTimes` times each), `delayMs` holds every answer.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { serializeChunkIndex, sha256Hex, type ChunkDigest, type ChunkIndex } from '../../../common/chunk-index.js';
import type { ImageId } from '../../../common/image-descriptor.js';

export interface ChunkServer {
  url: string;
  index: ChunkIndex;
  indexBytes: Buffer;
  /** Chunk GETs answered, by chunk number (in order). */
  chunkRequests: number[];
  /** Chunk bytes sent. */
  bytesServed: number;
  profile: Buffer | undefined;
  down: boolean;
  delayMs: number;
  /** Chunk number -> how many more times to serve wrong bytes for it. */
  corrupt: Map<number, number>;
  close(): Promise<void>;
}

/** The index of `image` cut into `chunkSize` chunks, with its id taken from the file's sha256. */
export function indexImage(image: Buffer, chunkSize: number): ChunkIndex {
  const chunks: ChunkDigest[] = [];
  for (let off = 0; off < image.length; off += chunkSize) {
    chunks.push(sha256Hex(image.subarray(off, off + chunkSize)) as ChunkDigest);
  }
  return {
    version: 1,
    imageId: sha256Hex(image) as ImageId,
    imageSize: image.length,
    chunkSize,
    chunks,
  };
}

export async function startChunkServer(
  imageFile: string,
  opts: { chunkSize: number; system?: string; lookupTag?: string },
): Promise<ChunkServer> {
  const image = readFileSync(imageFile);
  const index = indexImage(image, opts.chunkSize);
  const system = opts.system ?? 'test';
  const byDigest = new Map(index.chunks.map((d, n) => [d as string, n]));
  const prefix = `/api/chunks/${system}/${index.imageId}/`;
  const meta = 'FORMAT: squashfs\nENV: PATH=/bin\n';
  const state: ChunkServer = {
    url: '',
    index,
    indexBytes: serializeChunkIndex(index),
    chunkRequests: [],
    bytesServed: 0,
    profile: undefined,
    down: false,
    delayMs: 0,
    corrupt: new Map(),
    close: () => Promise.resolve(),
  };
  const immutable = { 'cache-control': 'public, max-age=31536000, immutable' };
  const answer = (req: IncomingMessage, res: ServerResponse, body: Buffer): void => {
    const path = req.url ?? '';
    const route = decodeURIComponent(path.split('?')[0]);
    if (opts.lookupTag !== undefined && route === `/api/lookup/${system}/docker/${opts.lookupTag}/`) {
      const record = { id: index.imageId, system, itype: 'docker', tag: [opts.lookupTag], status: 'READY' };
      const fields = { ENV: ['PATH=/bin'], ENTRY: 'MISSING', WORKDIR: 'MISSING', userACL: [], groupACL: [] };
      return void res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(JSON.stringify({ ...record, ...fields }));
    }
    if (path === prefix.slice(0, -1) && req.method === 'GET') {
      const facts = {
        id: index.imageId,
        indexDigest: sha256Hex(state.indexBytes),
        imageSize: index.imageSize,
        chunkSize: index.chunkSize,
        chunkCount: index.chunks.length,
        meta,
      };
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(facts));
    }
    if (!path.startsWith(prefix)) return void res.writeHead(404).end();
    const tail = path.slice(prefix.length);
    if (tail === 'index' && req.method === 'GET') {
      return void res.writeHead(200, { ...immutable, etag: `"${sha256Hex(state.indexBytes)}"` }).end(state.indexBytes);
    }
    if (tail === 'profile') {
      if (req.method === 'PUT') {
        state.profile = body;
        return void res.writeHead(204).end();
      }
      if (state.profile === undefined) return void res.writeHead(404).end();
      return void res.writeHead(200).end(state.profile);
    }
    const m = /^chunk\/([0-9a-f]{64})$/.exec(tail);
    const n = m ? byDigest.get(m[1]) : undefined;
    if (n === undefined) return void res.writeHead(404).end();
    state.chunkRequests.push(n);
    let bytes = image.subarray(n * index.chunkSize, (n + 1) * index.chunkSize);
    const left = state.corrupt.get(n) ?? 0;
    if (left > 0) {
      state.corrupt.set(n, left - 1);
      bytes = Buffer.from(bytes);
      bytes[0] ^= 0xff;
    }
    state.bytesServed += bytes.length;
    res.writeHead(200, { ...immutable, etag: `"${index.chunks[n]}"` }).end(bytes);
  };
  const server: Server = createServer((req, res) => {
    if (state.down) return void req.socket.destroy();
    const parts: Buffer[] = [];
    req.on('data', (d: Buffer) => parts.push(d));
    req.on('end', () => {
      const reply = (): void => answer(req, res, Buffer.concat(parts));
      if (state.delayMs > 0) setTimeout(reply, state.delayMs);
      else reply();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
