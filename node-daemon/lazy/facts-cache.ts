/**
 * What the gateway recorded for each lazy image (its index digest and `.meta` text), kept in
 * shifterd's memory so that a launch does not cost a gateway round trip. An image id is a content
 * digest, so its index digest never changes; its `.meta` (the ACLs) can, when a tag is re-pulled
 * onto the image: facts older than the TTL are asked for again, and while the gateway cannot be
 * reached the facts last seen are used (warm starts then work with the gateway down), from memory
 * or, after a restart, from the node's disk (facts-files.ts), and reused for a TTL before the
 * gateway is tried again, so only one launch per TTL waits for it to fail. Any other answer (the
 * image is gone, the answer is wrong) is the launch's error.
 */
import { LRUCache } from 'lru-cache';
import { describeError, isShifterError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import type { ImageFacts } from './chunk-source.js';

/** Facts with the time (ms since the epoch) the gateway answered them. */
export interface SeenFacts {
  facts: ImageFacts;
  seenAt: number;
}

/** Facts kept across restarts: written when the gateway answers, read when it cannot be reached. */
export interface FactsKeeper {
  read(id: ImageId): Promise<SeenFacts | undefined>;
  write(id: ImageId, seen: SeenFacts): Promise<void>;
}

export interface FactsCacheOptions {
  ttlMs: number;
  fetch: (id: ImageId) => Promise<ImageFacts>;
  log: Logger;
  keeper?: FactsKeeper;
  now?: () => number;
}

interface Held extends SeenFacts {
  /** When the gateway was last asked (or its failure last covered by these facts). */
  checkedAt: number;
}

export class FactsCache {
  private readonly held = new LRUCache<ImageId, Held>({ max: 1000 });
  private readonly asking = new Map<ImageId, Promise<ImageFacts>>();
  private readonly now: () => number;

  constructor(private readonly opts: FactsCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  get(id: ImageId): Promise<ImageFacts> {
    const held = this.held.get(id);
    if (held !== undefined && this.now() - held.checkedAt < this.opts.ttlMs) return Promise.resolve(held.facts);
    let pending = this.asking.get(id);
    if (pending === undefined) {
      pending = this.ask(id).finally(() => this.asking.delete(id));
      this.asking.set(id, pending);
    }
    return pending;
  }

  private async ask(id: ImageId): Promise<ImageFacts> {
    const { log, keeper } = this.opts;
    let facts: ImageFacts;
    try {
      facts = await this.opts.fetch(id);
    } catch (e) {
      if (!isShifterError(e) || e.code !== 'UNREACHABLE') throw e;
      const memory = this.held.get(id);
      const seen = memory ?? (await keeper?.read(id));
      if (seen === undefined) throw e;
      const ageSeconds = Math.round((this.now() - seen.seenAt) / 1000);
      log.warn(
        { image: id, ageSeconds, from: memory === undefined ? 'disk' : 'memory', err: describeError(e) },
        'image gateway unreachable: using the image facts (ACLs) last seen',
      );
      this.held.set(id, { ...seen, checkedAt: this.now() });
      return seen.facts;
    }
    const before = this.held.get(id)?.facts;
    const seen = { facts, seenAt: this.now() };
    this.held.set(id, { ...seen, checkedAt: seen.seenAt });
    if (keeper !== undefined && (before?.meta !== facts.meta || before.indexDigest !== facts.indexDigest)) {
      await keeper.write(id, seen).catch((e: unknown) => {
        log.warn({ image: id, err: describeError(e) }, 'image facts not kept on disk; a restart forgets them');
      });
    }
    return facts;
  }
}
