/**
 * Messages between shifterd and the FUSE server process over the Node IPC channel of the child.
 * shifterd asks, the server answers with the same `req` number; the server announces `ready`
 * once its mount is up.
 */
import type { ErrorCode } from '../../common/errors.js';
import type { ImageFacts } from './chunk-source.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { StoreUsage } from './chunk-store.js';
import type { ImageStatus, StageReport } from './lazy-images.js';

/** What shifterd passes to the server on its command line (JSON). */
export interface FuseServerConfig {
  cacheDir: string;
  mountpoint: string;
  sizeBytes: number;
  chunkTimeoutMs: number;
  profileWindowMs: number;
  prefetchParallel: number;
  bases: string[];
  /** HTTP caches asked before the gateways for index, chunk and profile GETs (lazyChunkCaches). */
  caches?: string[];
  system: string;
  /** Requests carry a munge credential made as root when set and the socket exists. */
  mungeSocket?: string;
}

export type ServerRequest =
  | { req: number; op: 'open'; id: ImageId; indexDigest?: string }
  | { req: number; op: 'stage'; id: ImageId; indexDigest?: string; what: StageWhat }
  | { req: number; op: 'facts'; id: ImageId }
  /** Image `id`, kept whole, was handed out again (its place in the eviction order). */
  | { req: number; op: 'touch'; id: ImageId }
  | { req: number; op: 'status' };

/** Every chunk of the image, or only what a start reads first (superblock, tables, recorded profile). */
export type StageWhat = 'all' | 'profile';

export interface CacheStatus {
  store: StoreUsage;
  images: ImageStatus[];
}

export type ServerReply =
  | {
      req: number;
      ok: true;
      status?: CacheStatus;
      stage?: StageReport;
      facts?: ImageFacts;
      /** open: the image's whole local file, when it is kept whole (else the FUSE file serves it). */
      wholeFile?: string;
    }
  | { req: number; ok: false; code: ErrorCode; message: string };

export type ServerEvent =
  | { ready: true }
  | { ready: false; code: ErrorCode; message: string }
  /** Image `whole` is now kept whole in `file` (undefined: that file was evicted). */
  | { whole: ImageId; file?: string };
