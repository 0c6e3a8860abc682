/**
 * Downloading one blob to a temporary file, verifying its sha256 and size while it streams, and
 * committing it under its content address. A dropped connection keeps the partial file and the
 * next attempt asks for the rest with `Range: bytes=<have>-`; a server that ignores Range (200)
 * or resumes elsewhere makes us start over. Nothing reaches the final name unless it verified.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat, truncate, unlink } from 'node:fs/promises';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { commitFile } from '../../common/atomic-write.js';
import { TransientError, networkError, type HttpResponse } from './http.js';
import { withRetries, type RetryPolicy } from './retry.js';
import type { LayerDescriptor } from './manifest.js';

/** Opens the blob at `offset` (Range when > 0); must return a 200 or 206 response. */
export type BlobOpener = (offset: number) => Promise<HttpResponse>;

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw e;
  }
}

async function hashPrefix(path: string, length: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (length === 0) return hash;
  for await (const chunk of createReadStream(path, { start: 0, end: length - 1 })) hash.update(chunk as Buffer);
  return hash;
}

/** Start offset of a `Content-Range: bytes start-end/total` header, or null. */
export function contentRangeStart(header: string | undefined): number | null {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec((header ?? '').trim());
  return m ? Number(m[1]) : null;
}

function mismatch(layer: LayerDescriptor, problem: string): ShifterError {
  return new ShifterError('DIGEST_MISMATCH',
    `blob ${layer.digest} failed verification: ${problem}; the registry or something between it and us (a proxy) corrupted it, pull again or report it to the registry's admins`);
}

export async function downloadBlob(layer: LayerDescriptor, tmpPath: string, finalPath: string, openBlob: BlobOpener,
  policy: RetryPolicy, onBytes?: (n: number) => void): Promise<void> {
  const report = (n: number) => { if (n !== 0) onBytes?.(n); };
  try {
    await withRetries(`downloading ${layer.digest}`, policy, async () => {
      let have = await sizeOf(tmpPath);
      if (have > layer.size) {
        await truncate(tmpPath, 0);
        report(-have);
        have = 0;
      }
      const res = await openBlob(have);
      if (have > 0 && (res.status === 200 || contentRangeStart(res.headers['content-range'] as string | undefined) !== have)) {
        if (res.status !== 200) {
          res.body.destroy();
          await truncate(tmpPath, 0);
          report(-have);
          throw new TransientError(`the server resumed ${layer.digest} at the wrong offset`, res.url.href);
        }
        policy.log.info({ digest: layer.digest }, 'server ignored the Range request; downloading the blob again from the start');
        await truncate(tmpPath, 0);
        report(-have);
        have = 0;
      }
      const hash = await hashPrefix(tmpPath, have);
      let total = have;
      const fh = await open(tmpPath, have > 0 ? 'a' : 'w', 0o644);
      try {
        const chunks = res.body[Symbol.asyncIterator]();
        for (;;) {
          let next: IteratorResult<Buffer>;
          try {
            next = await chunks.next() as IteratorResult<Buffer>;
          } catch (e) {
            throw networkError(e, res.url);
          }
          if (next.done) break;
          const chunk = next.value;
          total += chunk.length;
          if (total > layer.size) {
            res.body.destroy();
            throw mismatch(layer, `the registry sent more than the ${layer.size} bytes the manifest declares`);
          }
          hash.update(chunk);
          try {
            await fh.write(chunk);
          } catch (e) {
            res.body.destroy();
            throw asShifterError(e, 'IO_ERROR', `cannot write ${tmpPath}`);
          }
          report(chunk.length);
        }
      } finally {
        await fh.close();
      }
      if (total < layer.size) {
        throw new TransientError(`the connection ended after ${total} of ${layer.size} bytes of ${layer.digest}`, res.url.href);
      }
      const actual = `sha256:${hash.digest('hex')}`;
      if (actual !== layer.digest) throw mismatch(layer, `its content hashes to ${actual}`);
      await commitFile(tmpPath, finalPath);
    });
  } catch (e) {
    await unlink(tmpPath).catch(() => undefined);
    throw e;
  }
}
