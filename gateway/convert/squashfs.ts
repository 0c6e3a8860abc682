/**
 * Layer blobs in, one squashfs image out. The layers are flattened exactly as OCI defines
 * (gateway/flatten/planner.ts) in one streaming pass and piped as a single tar into `tar2sqfs`;
 * nothing is ever extracted to disk. Layers 2..N are first read for their headers only, so the
 * base layer, usually the biggest, is decompressed once. The image appears at `outputPath` only
 * when complete (temporary name in the same directory, fsync, rename); on any failure or abort
 * the temporary file is removed.
 * Memory stays flat whatever the image holds: per-path bookkeeping lives in a scratch SQLite file
 * next to the output (gateway/flatten/path-db.ts), dropped entries are listed up to a cap, and the
 * site's `Limits` stop an image past its entry or size budget as it streams (./limits.ts).
 */
import { availableParallelism } from 'node:os';
import { once } from 'node:events';
import { stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';
import * as tar from 'tar-stream';
import type { Logger } from '../../common/logger.js';
import { ShifterError, describeError, isShifterError } from '../../common/errors.js';
import { diskFullError, isDiskFull } from '../../common/disk-full.js';
import { DEFAULT_IMAGE_LIMITS, type ImageLimits } from '../config/imagemanager.js';
import { commitFile, temporaryNameFor } from '../../common/atomic-write.js';
import { layerCompression, type LayerCompression } from '../registry/media-types.js';
import { LayerIndex } from '../flatten/layer-index.js';
import { PathDb } from '../flatten/path-db.js';
import { FlattenPlanner, NeedFullIndex } from '../flatten/planner.js';
import { LimitMeter } from './limits.js';
import { tar2sqfsSettings, type Tar2sqfsSettings } from './converter-options.js';
import { openLayerSource, type LayerSource } from './layer-source.js';
import { startTar2sqfs } from './tar2sqfs.js';
import { hardLinkHeader, outputHeader, plannerHeader, type OutHeader } from './tar-entries.js';

/** One layer blob on local disk, as listed in the image manifest. */
export interface LayerFile {
  /** Path of the (possibly compressed) blob. */
  path: string;
  /** OCI/Docker layer media type: `+gzip`/`.tar.gzip` → gzip, `+zstd` → zstd, plain tar → none. */
  mediaType: string;
  /** `sha256:<hex>`: named in every log line and error about the layer. */
  digest: string;
}

export interface ConversionOptions {
  /** `imagemanager.json` `ConverterOptions.squashfs`: mksquashfs-style or tar2sqfs options. */
  compression?: string[];
  log: Logger;
  /** Aborting kills the helpers, removes the temporary file and rejects with CONVERSION_FAILED. */
  signal?: AbortSignal;
  /** imagemanager.json `Limits` (entries and expanded bytes are checked here); defaults otherwise. */
  limits?: ImageLimits;
}

export interface DroppedEntry {
  /** `<layer digest>:<path in that layer>` */
  path: string;
  reason: string;
}

export interface ConversionReport {
  /** Entries written into the image (directories, files, links, ...), root excluded. */
  entries: number;
  /** Layer entries left out because they were unsafe or unrepresentable: the first DROPPED_LISTED. */
  dropped: DroppedEntry[];
  /** How many entries were left out in all. */
  droppedTotal: number;
  /** Size of the squashfs image in bytes. */
  bytes: number;
  /** Wall-clock seconds the conversion took. */
  seconds: number;
}

interface Layer extends LayerFile {
  compression: LayerCompression;
  number: number;
  count: number;
  size: number;
}

class LayerReadError extends Error {
  constructor(
    readonly layer: Layer,
    cause: unknown,
  ) {
    super(describeError(cause));
  }
}

const INDEX_CONCURRENCY = 2;
const TAR_BLOCK = 512;
const PACK_BACKLOG_BYTES = 4 * 1024 * 1024;
/** A layer read that broke may be tar2sqfs dying (disk full): give its exit this long to explain it. */
const HELPER_EXIT_GRACE_MS = 1000;
/** Dropped entries listed and logged one by one; past this only counted (a hostile image could drop millions). */
export const DROPPED_LISTED = 100;

/**
 * Flattens `layers` (bottom to top) into a squashfs image at `outputPath`.
 * Throws ShifterError('CONVERSION_FAILED') naming the layer digest when a layer is corrupt,
 * truncated or not a tar, and ShifterError('BAD_CONFIG') for an unknown converter option.
 */
export async function convertLayersToSquashfs(
  layerFiles: LayerFile[],
  outputPath: string,
  opts: ConversionOptions,
): Promise<ConversionReport> {
  const started = performance.now();
  const settings = tar2sqfsSettings(opts.compression, availableParallelism());
  if (layerFiles.length === 0)
    throw new ShifterError(
      'CONVERSION_FAILED',
      'the image has no layers, so there is nothing to convert: check the image manifest',
    );
  const sizes = await Promise.all(
    layerFiles.map((l) =>
      stat(l.path).then(
        (st) => st.size,
        () => 0,
      ),
    ),
  );
  const layers: Layer[] = layerFiles.map((l, i) => ({
    ...l,
    compression: compressionOf(l),
    number: i + 1,
    count: layerFiles.length,
    size: sizes[i],
  }));
  const tmp = temporaryNameFor(outputPath);
  try {
    let result: Omit<ConversionReport, 'bytes' | 'seconds'>;
    try {
      result = await convertOnce(layers, tmp, settings, opts, false);
    } catch (e) {
      if (!(e instanceof NeedFullIndex)) throw e;
      opts.log.info({ reason: e.message }, 'indexing the base layer too and converting again');
      await unlink(tmp).catch(() => undefined);
      result = await convertOnce(layers, tmp, settings, opts, true);
    }
    throwIfAborted(opts.signal, outputPath);
    await commitFile(tmp, outputPath);
    const bytes = (await stat(outputPath)).size;
    const seconds = (performance.now() - started) / 1000;
    const { entries, droppedTotal } = result;
    opts.log.info({ output: outputPath, entries, dropped: droppedTotal, bytes, seconds }, 'squashfs image written');
    return { ...result, bytes, seconds };
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw conversionError(e, outputPath, opts.signal);
  }
}

function compressionOf(l: LayerFile): LayerCompression {
  try {
    return layerCompression(l.mediaType);
  } catch (e) {
    throw new ShifterError('CONVERSION_FAILED', `layer ${l.digest}: ${describeError(e)}`, e);
  }
}

function throwIfAborted(signal: AbortSignal | undefined, outputPath: string): void {
  if (signal?.aborted) throw new ShifterError('CONVERSION_FAILED', `the conversion to ${outputPath} was cancelled`);
}

function conversionError(e: unknown, outputPath: string, signal: AbortSignal | undefined): ShifterError {
  if (signal?.aborted) return new ShifterError('CONVERSION_FAILED', `the conversion to ${outputPath} was cancelled`, e);
  const full = diskFullError(e, dirname(outputPath));
  if (full) return full;
  if (isShifterError(e)) return e;
  if (e instanceof LayerReadError) {
    const l = e.layer;
    return new ShifterError(
      'CONVERSION_FAILED',
      `layer ${l.digest} (${l.number} of ${l.count}, ${l.compression === 'none' ? 'uncompressed' : l.compression}) is not a readable tar: ${e.message}. ` +
        `The blob ${l.path} is corrupt or truncated: delete it from the cache and pull the image again`,
      e,
    );
  }
  return new ShifterError('CONVERSION_FAILED', `converting to ${outputPath} failed: ${describeError(e)}`, e);
}

/** Tracks every helper started, so that a failure anywhere stops all of them. */
class Teardown {
  private readonly sources = new Set<LayerSource>();
  private readonly listeners: (() => void)[] = [];
  track(s: LayerSource): LayerSource {
    this.sources.add(s);
    return s;
  }
  release(s: LayerSource): void {
    this.sources.delete(s);
  }
  onStop(f: () => void): void {
    this.listeners.push(f);
  }
  stop(): void {
    for (const s of this.sources) s.close();
    this.sources.clear();
    for (const f of this.listeners.splice(0)) f();
  }
}

/** Reads one layer's tar, calling `onEntry` for each member in order, within the site's limits. */
async function readLayer(
  layer: Layer,
  teardown: Teardown,
  meter: LimitMeter,
  onEntry: (ordinal: number, entry: tar.Header, stream: Readable) => Promise<void> | void,
): Promise<void> {
  const source = teardown.track(openLayerSource(layer.path, layer.compression));
  const extract = tar.extract();
  const i = layer.number - 1;
  let bytes = 0;
  source.stream.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    try {
      meter.countBytes(i, bytes);
    } catch (e) {
      extract.destroy(e as Error);
    }
  });
  source.stream.on('error', (e) => extract.destroy(e));
  source.stream.pipe(extract as unknown as Writable);
  try {
    let ordinal = 0;
    for await (const entry of extract) {
      meter.countEntries(i, ordinal + 1);
      await onEntry(ordinal++, entry.header, entry);
    }
    await source.finished;
  } catch (e) {
    source.close();
    if (e instanceof NeedFullIndex || isShifterError(e) || isDiskFull(e)) throw e;
    throw new LayerReadError(layer, e);
  } finally {
    teardown.release(source);
  }
}

type Readable = { resume(): void; pipe(dest: unknown): unknown };

function drain(stream: Readable): void {
  stream.resume();
}

async function indexLayers(
  layers: Layer[],
  includeBase: boolean,
  teardown: Teardown,
  meter: LimitMeter,
  paths: PathDb,
): Promise<(LayerIndex | null)[]> {
  const indexes: (LayerIndex | null)[] = layers.map(() => null);
  const todo = layers.map((_, i) => i).filter((i) => includeBase || i > 0);
  const worker = async () => {
    for (let i = todo.shift(); i !== undefined; i = todo.shift()) {
      const index = new LayerIndex(paths, i);
      await readLayer(layers[i], teardown, meter, (ordinal, h, stream) => {
        index.add(ordinal, plannerHeader(h));
        drain(stream);
      });
      indexes[i] = index;
    }
  };
  await Promise.all(Array.from({ length: INDEX_CONCURRENCY }, worker));
  return indexes;
}

/**
 * Writes tar entries into the pack, waiting for each to be consumed. tar-stream applies
 * backpressure to file data only, never to headers: an image of millions of empty files would
 * queue all their headers in memory while tar2sqfs lags. So the writer also waits whenever more
 * than PACK_BACKLOG_BYTES are handed over and not yet passed on by the pump (counted as a lower
 * bound, header and padded data, so the wait always ends once the pump has caught up).
 */
class TarWriter {
  entries = 0;
  private handed = 0;
  private pumped = 0;
  private caughtUp: (() => void) | null = null;
  constructor(private readonly pack: tar.Pack) {}

  /** The pump passed `bytes` more on to tar2sqfs. */
  passedOn(bytes: number): void {
    this.pumped += bytes;
    if (this.caughtUp && this.handed - this.pumped <= PACK_BACKLOG_BYTES) {
      const resume = this.caughtUp;
      this.caughtUp = null;
      resume();
    }
  }

  async write(header: OutHeader, content?: Readable): Promise<void> {
    if (this.handed - this.pumped > PACK_BACKLOG_BYTES) {
      await new Promise<void>((resolve) => {
        this.caughtUp = resolve;
      });
    }
    await new Promise<void>((resolve, reject) => {
      const cb = (err?: Error | null) => (err ? reject(err) : resolve());
      if (header.type === 'file' && content) {
        const sink = this.pack.entry(header, cb);
        sink.on('error', () => undefined);
        content.pipe(sink);
      } else {
        if (content) drain(content);
        this.pack.entry(header, cb);
      }
    });
    this.handed += TAR_BLOCK + Math.ceil((header.size ?? 0) / TAR_BLOCK) * TAR_BLOCK;
    if (header.name !== './') this.entries++;
  }
}

/** Dropped entries: the first DROPPED_LISTED listed and logged, the rest counted. */
class DroppedList {
  readonly listed: DroppedEntry[] = [];
  total = 0;
  constructor(private readonly log: Logger) {}

  add(layer: Layer, path: string, reason: string): void {
    this.total++;
    if (this.total > DROPPED_LISTED) return;
    this.listed.push({ path: `${layer.digest}:${path}`, reason });
    this.log.warn({ layer: layer.digest, path, reason }, 'dropped a layer entry');
  }

  summarise(): void {
    if (this.total > DROPPED_LISTED) {
      const more = this.total - DROPPED_LISTED;
      this.log.warn({ dropped: this.total, listed: DROPPED_LISTED }, `dropped ${more} more layer entries (not listed)`);
    }
  }
}

async function convertOnce(
  layers: Layer[],
  tmp: string,
  settings: Tar2sqfsSettings,
  opts: ConversionOptions,
  indexBase: boolean,
): Promise<Omit<ConversionReport, 'bytes' | 'seconds'>> {
  const paths = new PathDb(`${tmp}.paths`);
  const teardown = new Teardown();
  let rejectStopped: (e: unknown) => void = () => undefined;
  const stopped = new Promise<never>((_, reject) => {
    rejectStopped = reject;
  });
  stopped.catch(() => undefined);
  const onAbort = () => {
    rejectStopped(new ShifterError('CONVERSION_FAILED', 'cancelled'));
    teardown.stop();
  };
  if (opts.signal?.aborted) onAbort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const dropped = new DroppedList(opts.log);
  const meter = new LimitMeter(layers, opts.limits ?? DEFAULT_IMAGE_LIMITS);
  /** tar2sqfs's own failure, when it has one: it explains the broken pipe the readers then see. */
  let helperFailure: unknown = null;

  const work = async () => {
    const indexes = await indexLayers(layers, indexBase, teardown, meter, paths);
    const planner = new FlattenPlanner(paths, indexes);
    const sq = startTar2sqfs(settings.args, tmp);
    teardown.onStop(() => sq.kill());
    sq.exited.catch((e: unknown) => {
      helperFailure = e;
      rejectStopped(e);
      teardown.stop();
    });
    const pack = tar.pack();
    teardown.onStop(() => pack.destroy());
    const out = new TarWriter(pack);
    const pump = (async () => {
      for await (const chunk of pack) {
        const bytes = (chunk as Buffer).length;
        if (!sq.stdin.write(chunk)) await once(sq.stdin, 'drain');
        sq.fed(bytes);
        out.passedOn(bytes);
      }
      sq.stdin.end();
    })();
    pump.catch(() => undefined);

    for (const layer of layers) {
      const i = layer.number - 1;
      planner.beginLayer(i);
      await readLayer(layer, teardown, meter, async (ordinal, h, stream) => {
        const d = planner.decide(i, ordinal, plannerHeader(h));
        if (d.action === 'emit') return out.write(outputHeader(d.path, h, settings), stream);
        if (d.action === 'drop') dropped.add(layer, d.path, d.reason);
        drain(stream);
      });
    }

    const plan = planner.finish();
    for (const layer of layers) {
      const wanted = plan.materialise(layer.number - 1)[Symbol.iterator]();
      let next = wanted.next();
      if (next.done) continue;
      await readLayer(layer, teardown, meter, async (ordinal, h, stream) => {
        if (next.done || next.value.ordinal !== ordinal) return drain(stream);
        const path = next.value.path;
        next = wanted.next();
        return out.write(outputHeader(path, h, settings), stream);
      });
    }
    for (const link of plan.links()) await out.write(hardLinkHeader(link.path, link.target));
    pack.finalize();
    await pump;
    await sq.exited;
    dropped.summarise();
    return { entries: out.entries, dropped: dropped.listed, droppedTotal: dropped.total };
  };

  try {
    const running = work();
    running.catch(() => undefined);
    return await Promise.race([running, stopped]);
  } catch (e) {
    if (helperFailure === null && e instanceof LayerReadError) {
      await Promise.race([stopped, new Promise((r) => setTimeout(r, HELPER_EXIT_GRACE_MS))]).catch(() => undefined);
    }
    throw helperFailure ?? e;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    teardown.stop();
    paths.close();
  }
}
