/** Downloads an image's layers into the blob cache, a few at a time, with overall progress. */
import type { RegistryClient } from './client.js';
import type { BlobCache } from './blob-cache.js';
import type { LayerDescriptor } from './manifest.js';

export interface FetchProgress {
  layersDone: number;
  layersTotal: number;
  bytesDone: number;
  bytesTotal: number;
}

export interface FetchLayersOptions {
  /** Parallel downloads (default 3). */
  concurrency?: number;
  onProgress?: (p: FetchProgress) => void;
  /** Bytes that came over the network (a cache hit reports none). */
  onDownloaded?: (bytes: number) => void;
  signal?: AbortSignal;
}

/** Returns the cache paths of the layers, in manifest order (eldest first). */
export async function fetchLayers(
  client: RegistryClient,
  repository: string,
  layers: readonly LayerDescriptor[],
  cache: BlobCache,
  options: FetchLayersOptions = {},
): Promise<string[]> {
  const concurrency = Math.max(1, options.concurrency ?? 3);
  const progress: FetchProgress = {
    layersDone: 0,
    layersTotal: layers.length,
    bytesDone: 0,
    bytesTotal: layers.reduce((n, l) => n + l.size, 0),
  };
  const report = () => options.onProgress?.({ ...progress });
  const paths: string[] = new Array<string>(layers.length);
  // One failed layer fails the pull: stop the other downloads instead of letting them run on.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  let next = 0;
  const worker = async () => {
    while (next < layers.length && !signal.aborted) {
      const i = next++;
      const layer = layers[i];
      let counted = 0;
      paths[i] = await client.fetchBlob(
        repository,
        layer,
        cache,
        (n) => {
          counted += n;
          progress.bytesDone += n;
          options.onDownloaded?.(n);
          report();
        },
        signal,
      );
      // A cache hit reports no bytes; count the layer's size so totals add up.
      progress.bytesDone += layer.size - counted;
      progress.layersDone++;
      report();
    }
  };
  report();
  let firstError: { error: unknown } | null = null;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, layers.length) }, () =>
      worker().catch((e: unknown) => {
        firstError ??= { error: e };
        stop.abort(e);
      }),
    ),
  );
  options.signal?.throwIfAborted();
  if (firstError !== null) throw (firstError as { error: unknown }).error;
  return paths;
}
