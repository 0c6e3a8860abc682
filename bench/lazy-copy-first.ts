/**
 * The copy-first side of bench/lazy.sh: what a node without a shared filesystem does without the
 * lazy cache. It copies the whole image from the gateway into imagePath before any launch, through
 * the same chunk routes the lazy path uses (the gateway has no other route that serves image
 * bytes to a node): one munge exchange for a node token, the image facts, the index (checked
 * against the recorded digest), then every chunk, 8 in flight (enough to fill 1 Gbit/s at 10 ms
 * RTT), written at its offset into a temporary file that is fsynced and renamed into place, the
 * `.meta` written last. The chunks are not hashed (the lazy side hashes each one) and the file is
 * written once, in place: this is the copy at its fastest. (curl -Z was tried: it must write each
 * chunk to a file of its own and join them, which took longer here, the disk being the limit.)
 * Prints one JSON line {"bytes", "fetchMs" (every chunk written, not yet synced), "ms" (all done)}.
 * Usage (as root): node dist/bench/lazy-copy-first.js GATEWAY_URL SYSTEM IMAGE_ID IMAGE_DIR MUNGE_SOCKET
 */
import { open } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { commitFile, temporaryNameFor, writeFileAtomic } from '../common/atomic-write.js';
import { chunkSpan, parseChunkIndex } from '../common/chunk-index.js';
import { mungeEncode } from '../common/munge.js';

const IN_FLIGHT = 8;
const [gateway, system, id, imageDir, mungeSocket] = process.argv.slice(2);
if (mungeSocket === undefined) {
  console.error('usage: lazy-copy-first.js GATEWAY_URL SYSTEM IMAGE_ID IMAGE_DIR MUNGE_SOCKET');
  process.exit(2);
}
const started = performance.now();
const base = `${gateway}/api/chunks/${system}`;

async function get(url: string, headers: Record<string, string>, method = 'GET'): Promise<Buffer> {
  const res = await fetch(url, { method, headers });
  if (!res.ok) throw new Error(`${method} ${url}: HTTP ${res.status} ${await res.text()}`);
  return Buffer.from(await res.arrayBuffer());
}

const session = await get(
  `${base}/session`,
  { authentication: await mungeEncode('', { socket: mungeSocket }) },
  'POST',
);
const auth = { authorization: `Bearer ${(JSON.parse(session.toString('utf8')) as { token: string }).token}` };
const facts = JSON.parse((await get(`${base}/${id}`, auth)).toString('utf8')) as { indexDigest: string; meta: string };
const index = parseChunkIndex(await get(`${base}/${id}/index`, auth), facts.indexDigest);

/** One chunk's bytes as they came (node:http: fetch's arrayBuffer copies them twice more). */
function chunk(n: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}/${id}/chunk/${index.chunks[n]}`, { agent, headers: auth }, (res) => {
      const parts: Buffer[] = [];
      let length = 0;
      res.on('data', (d: Buffer) => {
        parts.push(d);
        length += d.length;
      });
      res.on('error', reject);
      res.on('end', () => {
        const expected = chunkSpan(index, n).length;
        if (res.statusCode === 200 && length === expected) resolve(parts);
        else reject(new Error(`chunk ${n} of image ${id}: HTTP ${res.statusCode}, ${length} bytes, not ${expected}`));
      });
    });
    req.on('error', reject);
    req.end();
  });
}

const agent = new Agent({ keepAlive: true, maxSockets: IN_FLIGHT });
const finalPath = join(imageDir, `${id}.squashfs`);
const tmpPath = temporaryNameFor(finalPath);
const file = await open(tmpPath, 'wx', 0o644);
let bytes = 0;
let fetchedAt = 0;
try {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < index.chunks.length) {
      const n = next++;
      const parts = await chunk(n);
      const { offset, length } = chunkSpan(index, n);
      await file.writev(parts, offset);
      bytes += length;
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  fetchedAt = performance.now();
} finally {
  await file.close();
  agent.destroy();
}
await commitFile(tmpPath, finalPath);
await writeFileAtomic(join(imageDir, `${id}.meta`), facts.meta, 0o644);
const ms = (t: number): number => Math.round(t - started);
console.log(JSON.stringify({ bytes, fetchMs: ms(fetchedAt), ms: ms(performance.now()) }));
