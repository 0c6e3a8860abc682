/**
 * The image facts shifterd last got from the gateway, kept on the node's disk
 * (`<lazyImageCache>/facts/<id>.json`, written whole or not at all) so that they outlive a
 * restart: read only when the gateway cannot be reached (facts-cache.ts). They are as safe as the
 * memory copy: written by root from an answer of the gateway, in a root-only directory.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../common/atomic-write.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { ImageFacts } from './chunk-source.js';
import type { FactsKeeper, SeenFacts } from './facts-cache.js';

const HEX64 = /^[0-9a-f]{64}$/;

export class FactsFiles implements FactsKeeper {
  constructor(private readonly dir: string) {}

  private file(id: ImageId): string {
    return join(this.dir, `${id}.json`);
  }

  /** Undefined when none was kept, or what was kept is not facts (a damaged file is not trusted). */
  async read(id: ImageId): Promise<SeenFacts | undefined> {
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(this.file(id), 'utf8'));
    } catch {
      return undefined;
    }
    const r = raw as { indexDigest?: unknown; meta?: unknown; seenAt?: unknown };
    if (typeof r.indexDigest !== 'string' || !HEX64.test(r.indexDigest)) return undefined;
    if (typeof r.meta !== 'string' || typeof r.seenAt !== 'number') return undefined;
    const facts: ImageFacts = { indexDigest: r.indexDigest, meta: r.meta };
    return { facts, seenAt: r.seenAt };
  }

  async write(id: ImageId, { facts, seenAt }: SeenFacts): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file(id), JSON.stringify({ ...facts, seenAt }), 0o600);
  }
}
