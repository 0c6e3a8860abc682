/**
 * Content-addressed blob store `<dir>/sha256/<hex>`, one per gateway (built at start-up; one
 * gateway per CacheDirectory). A blob is written by a BlobWriter, which owns its partial file
 * `sha256/.partial-<hex>` until it commits it: the content is verified against the digest and
 * size, fsynced and renamed to the final name, so a reader never sees a partial or wrong blob.
 * The partial file's name is fixed per blob so that an interrupted download (a failed attempt,
 * a shutdown, a kill -9) resumes where it stopped, in this process or the next one. Content that
 * fails verification is discarded. Two pulls of one blob share one download.
 *
 * Beside each blob, `sha256/<hex>.sources` (written atomically) records which registry and
 * repository served it and whether anonymously. A cached blob is handed to a pull only when
 * blob-reuse.ts says this pull's registry would serve it (the fetcher's `mayReuse`); otherwise the
 * pull downloads it on its own account, into a temporary file that replaces the cached one, and a
 * registry that does not have the blob fails that pull honestly.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { commitFile, isTemporaryName, temporaryNameFor, writeFileAtomic } from '../../common/atomic-write.js';
import type { LayerDescriptor } from './manifest.js';
import { parseBlobSources, withBlobSource, type BlobSource } from './blob-reuse.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const PARTIAL_PREFIX = '.partial-';
const SOURCES_SUFFIX = '.sources';
/** A partial download nobody came back for within a day is garbage, not a head start. */
const PARTIAL_MAX_AGE_MS = 24 * 3600_000;

function mismatch(layer: LayerDescriptor, problem: string): ShifterError {
  return new ShifterError(
    'DIGEST_MISMATCH',
    `blob ${layer.digest} failed verification: ${problem}; the registry or something between it and us (a proxy) ` +
      "corrupted it, pull again or report it to the registry's admins",
  );
}

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

/** Writes one blob: appends to its partial file while hashing, then commits it or leaves it to resume. */
export class BlobWriter {
  private constructor(
    readonly layer: LayerDescriptor,
    private readonly partialPath: string,
    private readonly finalPath: string,
    private handle: FileHandle,
    private hash: Hash,
    private written: number,
  ) {}

  static async open(layer: LayerDescriptor, partialPath: string, finalPath: string): Promise<BlobWriter> {
    try {
      let have = await sizeOf(partialPath);
      if (have > layer.size) have = 0;
      const handle = await open(partialPath, have > 0 ? 'r+' : 'w', 0o644);
      await handle.truncate(have);
      return new BlobWriter(layer, partialPath, finalPath, handle, await hashPrefix(partialPath, have), have);
    } catch (e) {
      throw asShifterError(e, 'IO_ERROR', `cannot open ${partialPath}`);
    }
  }

  /** Bytes already held, from earlier attempts or an earlier run of the gateway. */
  get offset(): number {
    return this.written;
  }

  /** Starts over from byte 0 (the server would not resume where we are). */
  async restart(): Promise<void> {
    await this.handle.truncate(0);
    this.hash = createHash('sha256');
    this.written = 0;
  }

  async write(chunk: Buffer): Promise<void> {
    if (this.written + chunk.length > this.layer.size) {
      throw mismatch(this.layer, `the registry sent more than the ${this.layer.size} bytes the manifest declares`);
    }
    try {
      await this.handle.write(chunk, 0, chunk.length, this.written);
    } catch (e) {
      throw asShifterError(e, 'IO_ERROR', `cannot write ${this.partialPath}`);
    }
    this.hash.update(chunk);
    this.written += chunk.length;
  }

  /** Verifies the complete blob and moves it to its final name; content that fails is discarded. */
  async commit(): Promise<void> {
    const actual = `sha256:${this.hash.copy().digest('hex')}`;
    if (this.written !== this.layer.size || actual !== this.layer.digest) {
      await this.discard();
      throw mismatch(
        this.layer,
        this.written !== this.layer.size
          ? `it has ${this.written} of ${this.layer.size} bytes`
          : `its content hashes to ${actual}`,
      );
    }
    await this.handle.close();
    await commitFile(this.partialPath, this.finalPath);
  }

  async discard(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await rm(this.partialPath, { force: true });
  }

  /** Keeps what was written so a later download resumes from it. */
  async keep(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** How one pull gets a blob: whether it may take the cached copy, and how it downloads one. */
export interface BlobFetcher {
  /** Whether this pull's registry would serve the blob, given where the cached copy came from. */
  mayReuse(sources: readonly BlobSource[]): Promise<boolean>;
  /** Downloads the blob into the writer; returns where it came from. */
  fill(writer: BlobWriter): Promise<BlobSource>;
}

export class BlobCache {
  private readonly inFlight = new Map<string, Promise<string>>();
  private readonly sourceUpdates = new Map<string, Promise<void>>();

  constructor(readonly dir: string) {}

  private get blobDir(): string {
    return join(this.dir, 'sha256');
  }

  /**
   * Start-up: creates the directory and removes temporary files an interrupted write left, and
   * partial downloads untouched for a day. Returns the names removed.
   */
  async open(now = Date.now()): Promise<string[]> {
    await mkdir(this.blobDir, { recursive: true });
    const removed: string[] = [];
    for (const name of await readdir(this.blobDir)) {
      const path = join(this.blobDir, name);
      const info = name.startsWith(PARTIAL_PREFIX) ? await stat(path).catch(() => null) : null;
      const stale = info !== null && now - info.mtimeMs > PARTIAL_MAX_AGE_MS;
      if (isTemporaryName(name) || stale) {
        await rm(path, { force: true });
        removed.push(name);
      }
    }
    return removed;
  }

  pathFor(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m) throw new ShifterError('BAD_ARGUMENT', `"${digest}" is not a sha256 digest (sha256:<64 hex digits>)`);
    return join(this.blobDir, m[1]);
  }

  private partialPathFor(digest: string): string {
    return join(this.blobDir, `${PARTIAL_PREFIX}${digest.slice('sha256:'.length)}`);
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.pathFor(digest))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  private sourcesPathFor(digest: string): string {
    return `${this.pathFor(digest)}${SOURCES_SUFFIX}`;
  }

  /** Where the cached blob came from; none for a blob cached before sources were recorded. */
  async sources(digest: string): Promise<BlobSource[]> {
    try {
      return parseBlobSources(await readFile(this.sourcesPathFor(digest), 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw asShifterError(e, 'IO_ERROR', `cannot read ${this.sourcesPathFor(digest)}`);
    }
  }

  /** Records one more source of a blob; updates of one blob are serialised so none is lost. */
  private recordSource(digest: string, source: BlobSource): Promise<void> {
    const path = this.sourcesPathFor(digest);
    // The stored chain never rejects: a failed update fails its own pull, not the next one.
    const update = (this.sourceUpdates.get(path) ?? Promise.resolve()).then(async () => {
      const before = await this.sources(digest);
      const after = withBlobSource(before, source);
      if (after.length === before.length && after.every((s, i) => s === before[i])) return;
      await writeFileAtomic(path, JSON.stringify(after) + '\n').catch((e: unknown) => {
        throw asShifterError(e, 'IO_ERROR', `cannot write ${path}`);
      });
    });
    const settled: Promise<void> = update
      .catch(() => undefined)
      .then(() => {
        if (this.sourceUpdates.get(path) === settled) this.sourceUpdates.delete(path);
      });
    this.sourceUpdates.set(path, settled);
    return update;
  }

  /**
   * Returns the path of the blob as this pull may have it: a cached copy when `fetcher.mayReuse`
   * accepts its sources, else what `fetcher.fill` downloads (the cache verifies and commits it).
   * Concurrent downloads of a missing blob share a single run; a pull that joins one still has to
   * pass `mayReuse` afterwards, like any other cache hit.
   */
  async ensure(layer: LayerDescriptor, fetcher: BlobFetcher): Promise<string> {
    const path = this.pathFor(layer.digest);
    if (await this.has(layer.digest)) {
      if (await fetcher.mayReuse(await this.sources(layer.digest))) return path;
      return this.download(layer, fetcher, temporaryNameFor(path));
    }
    const running = this.inFlight.get(path);
    // The shared run belongs to the pull that started it (its signal, its failures): when it fails,
    // this caller downloads on its own account instead of failing with another pull's error.
    if (running) return running.catch(() => undefined).then(() => this.ensure(layer, fetcher));
    const p = this.download(layer, fetcher, this.partialPathFor(layer.digest)).finally(() =>
      this.inFlight.delete(path),
    );
    this.inFlight.set(path, p);
    return p;
  }

  private async download(layer: LayerDescriptor, fetcher: BlobFetcher, partialPath: string): Promise<string> {
    const path = this.pathFor(layer.digest);
    await mkdir(this.blobDir, { recursive: true });
    const writer = await BlobWriter.open(layer, partialPath, path);
    let source: BlobSource;
    try {
      source = await fetcher.fill(writer);
      await writer.commit();
    } catch (e) {
      const resumable = !(e instanceof ShifterError && e.code === 'DIGEST_MISMATCH') && !isTemporaryName(partialPath);
      if (resumable) await writer.keep();
      else await writer.discard();
      throw e;
    }
    await this.recordSource(layer.digest, source);
    return path;
  }
}
