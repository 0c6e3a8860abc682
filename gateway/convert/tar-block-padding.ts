/**
 * Some writers end a layer tar right after the last member's data, without padding it to a
 * 512-byte block and without the two zero blocks that mark the end of an archive (umoci 0.4
 * does, for every layer it makes). GNU tar and Docker accept such layers; tar-stream reports
 * "Unexpected end of data". Completing the last block is enough for tar-stream to end cleanly.
 * Only the final partial block is completed: a member whose data is really missing (more than
 * the padding) still fails, so a truncated layer is never taken for a complete one.
 */
import { Transform, type TransformCallback } from 'node:stream';

const TAR_BLOCK = 512;

export class TarBlockPadding extends Transform {
  private total = 0;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.total += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const partial = this.total % TAR_BLOCK;
    callback(null, partial === 0 ? undefined : Buffer.alloc(TAR_BLOCK - partial));
  }
}
