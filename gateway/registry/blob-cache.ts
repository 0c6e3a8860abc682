/**
 * Content-addressed blob store `<dir>/sha256/<hex>`, shared by every pull. A blob appears under its
 * final name only after it was written to a temporary name in the same directory, verified against
 * its digest and size, fsynced and renamed, so a reader never sees a partial or wrong blob.
 * Two pulls of the same blob in this process share one download; two processes each download to
 * their own temporary name and the second rename replaces identical content.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import { temporaryNameFor } from '../../common/atomic-write.js';

const DIGEST = /^sha256:([0-9a-f]{64})$/;

const inFlight = new Map<string, Promise<string>>();

export class BlobCache {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  pathFor(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m) throw new ShifterError('BAD_ARGUMENT', `"${digest}" is not a sha256 digest (sha256:<64 hex digits>)`);
    return join(this.dir, 'sha256', m[1]!);
  }

  async has(digest: string): Promise<boolean> {
    try {
      return (await stat(this.pathFor(digest))).isFile();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /** A fresh temporary name next to the blob's final name (same filesystem, so rename is atomic). */
  async temporaryPathFor(digest: string): Promise<string> {
    await mkdir(join(this.dir, 'sha256'), { recursive: true });
    return temporaryNameFor(this.pathFor(digest));
  }

  /**
   * Returns the blob's path, calling `produce` to store it when it is missing. `produce` must leave
   * the verified blob under `pathFor(digest)`; concurrent calls for one blob share a single run.
   */
  async ensure(digest: string, produce: () => Promise<void>): Promise<string> {
    const path = this.pathFor(digest);
    if (await this.has(digest)) return path;
    const running = inFlight.get(path);
    // The shared run belongs to the pull that started it (its signal, its failures): when it fails,
    // this caller downloads on its own account instead of failing with another pull's error.
    if (running) return running.catch(() => this.ensure(digest, produce));
    const p = (async () => {
      try {
        await produce();
        return path;
      } finally {
        inFlight.delete(path);
      }
    })();
    inFlight.set(path, p);
    return p;
  }
}
