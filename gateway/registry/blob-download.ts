/**
 * Downloading one blob into its BlobWriter. The writer may already hold a prefix (an earlier
 * attempt, or a download the gateway was stopped or killed in); the request asks for the rest with
 * `Range: bytes=<have>-`. A server that ignores Range (200) or resumes elsewhere makes us start
 * over. The writer verifies the sha256 and size when the cache commits the blob.
 */
import { TransientError, networkError, type HttpResponse } from './http.js';
import { withRetries, type RetryPolicy } from './retry.js';
import type { BlobWriter } from './blob-cache.js';

/** Opens the blob at `offset` (Range when > 0); must return a 200 or 206 response. */
export type BlobOpener = (offset: number) => Promise<HttpResponse>;

/** Start offset of a `Content-Range: bytes start-end/total` header, or null. */
export function contentRangeStart(header: string | undefined): number | null {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec((header ?? '').trim());
  return m ? Number(m[1]) : null;
}

/** `onBytes` gets the bytes held (a resumed prefix counts at the start); negative when a restart discards some. */
export async function downloadBlob(
  writer: BlobWriter,
  openBlob: BlobOpener,
  policy: RetryPolicy,
  onBytes?: (n: number) => void,
): Promise<void> {
  const layer = writer.layer;
  const report = (n: number) => {
    if (n !== 0) onBytes?.(n);
  };
  report(writer.offset);
  await withRetries(`downloading ${layer.digest}`, policy, async () => {
    const have = writer.offset;
    if (have === layer.size) return;
    const res = await openBlob(have);
    if (have > 0 && (res.status === 200 || contentRangeStart(res.headers['content-range']) !== have)) {
      await writer.restart();
      report(-have);
      if (res.status !== 200) {
        res.body.destroy();
        throw new TransientError(`the server resumed ${layer.digest} at the wrong offset`, res.url.href);
      }
      policy.log.info(
        { digest: layer.digest },
        'server ignored the Range request; downloading the blob again from the start',
      );
    }
    const chunks = res.body[Symbol.asyncIterator]();
    for (;;) {
      let next: IteratorResult<Buffer>;
      try {
        next = (await chunks.next()) as IteratorResult<Buffer>;
      } catch (e) {
        throw networkError(e, res.url);
      }
      if (next.done) break;
      try {
        await writer.write(next.value);
      } catch (e) {
        res.body.destroy();
        throw e;
      }
      report(next.value.length);
    }
    if (writer.offset < layer.size) {
      throw new TransientError(
        `the connection ended after ${writer.offset} of ${layer.size} bytes of ${layer.digest}`,
        res.url.href,
      );
    }
  });
}
