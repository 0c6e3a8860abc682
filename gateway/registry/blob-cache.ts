/**
 * Content-addressed blob store `<dir>/sha256/<hex>`, one per gateway (built at start-up; one
 * gateway per CacheDirectory). A blob is written by a BlobWriter, which owns its partial file
 * `sha256/.partial-<hex>` until it commits it: the content is verified against the digest and
 * size, fsynced and renamed to the final name, so a reader never sees a partial or wrong blob.
 * The partial file's name is fixed per blob so that an interrupted download (a failed attempt,
 * a shutdown, a kill -9) resumes where it stopped, in this process or the next one. Content that
 * fails verification is discarded. Two pulls of one blob share one download.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { commitFile, isTemporaryName } from '../../common/atomic-write.js';
import type { LayerDescriptor } from './manifest.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;
const PARTIAL_PREFIX = '.partial-';
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

export class BlobCache {
  private readonly inFlight = new Map<string, Promise<string>>();

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
    return join(this.blobDir, m[1]!);
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

  /**
   * Returns the blob's path, calling `fill` to write it when it is missing; the cache commits what
   * `fill` wrote. Concurrent calls for one blob share a single run.
   */
  async ensure(layer: LayerDescriptor, fill: (writer: BlobWriter) => Promise<void>): Promise<string> {
    const path = this.pathFor(layer.digest);
    if (await this.has(layer.digest)) return path;
    const running = this.inFlight.get(path);
    // The shared run belongs to the pull that started it (its signal, its failures): when it fails,
    // this caller downloads on its own account instead of failing with another pull's error.
    if (running) return running.catch(() => this.ensure(layer, fill));
    const p = (async () => {
      try {
        await mkdir(this.blobDir, { recursive: true });
        const writer = await BlobWriter.open(layer, this.partialPathFor(layer.digest), path);
        try {
          await fill(writer);
          await writer.commit();
        } catch (e) {
          if (e instanceof ShifterError && e.code === 'DIGEST_MISMATCH') await writer.discard();
          else await writer.keep();
          throw e;
        }
        return path;
      } finally {
        this.inFlight.delete(path);
      }
    })();
    this.inFlight.set(path, p);
    return p;
  }
}
