/**
 * A layer blob as a stream of tar bytes. gzip goes through Node's zlib (measured faster than a
 * `pigz -dc` child: ~330 vs ~240 MB/s on this machine), zstd through a `zstd -dc` child (Node 20
 * has no zstd). `finished` settles when the decompressor is done and rejects with its own error,
 * so a truncated blob is reported as such even when the tar reader saw a clean end.
 */
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { LayerCompression } from '../registry/media-types.js';
import { TarBlockPadding } from './tar-block-padding.js';

export interface LayerSource {
  stream: Readable;
  finished: Promise<void>;
  /** Stops reading and kills the decompressor (idempotent). */
  close(): void;
}

const READ_CHUNK = 1 << 20;

export function openLayerSource(path: string, compression: LayerCompression): LayerSource {
  if (compression === 'zstd') return zstdSource(path);
  const file = createReadStream(path, { highWaterMark: READ_CHUNK });
  const decompressed: Readable = compression === 'gzip' ? file.pipe(createGunzip({ chunkSize: 1 << 17 })) : file;
  if (decompressed !== file) file.on('error', (e) => decompressed.destroy(e));
  const stream = decompressed.pipe(new TarBlockPadding());
  decompressed.on('error', (e) => stream.destroy(e));
  const finished = new Promise<void>((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
    stream.on('close', () => resolve());
  });
  finished.catch(() => undefined);
  return {
    stream,
    finished,
    close: () => {
      file.destroy();
      decompressed.destroy();
      stream.destroy();
    },
  };
}

function zstdSource(path: string): LayerSource {
  const child = spawn('zstd', ['-d', '-c', '-q', '--', path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = new TarBlockPadding({ highWaterMark: READ_CHUNK });
  child.stdout.pipe(out);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    if (stderr.length < 4096) stderr += d;
  });
  const finished = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot run zstd: ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `zstd failed (${signal ?? `exit ${code}`}): ${(stderr.trim().split('\n').pop() ?? '').replace(/^.*? : /, '')}`,
          ),
        );
    });
  });
  finished.catch((e: unknown) => out.destroy(e as Error));
  return {
    stream: out,
    finished,
    close: () => {
      out.destroy();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
