/**
 * What the gateway recorded for each lazy image (its index digest and `.meta` text), kept in
 * shifterd's memory so that a launch does not cost a gateway round trip. An image id is a content
 * digest, so its index digest never changes; its `.meta` (the ACLs) can, when a tag is re-pulled
 * onto the image: facts older than the TTL are asked for again, and while the gateway cannot be
 * reached the facts last seen are used (warm starts then work with the gateway down). Any other
 * answer (the image is gone, the answer is wrong) is the launch's error.
 */
import { LRUCache } from 'lru-cache';
import { describeError, isShifterError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import type { ImageFacts } from './chunk-source.js';

export interface FactsCacheOptions {
  ttlMs: number;
  fetch: (id: ImageId) => Promise<ImageFacts>;
  log: Logger;
  now?: () => number;
}

export class FactsCache {
  private readonly held = new LRUCache<ImageId, { facts: ImageFacts; at: number }>({ max: 1000 });
  private readonly asking = new Map<ImageId, Promise<ImageFacts>>();
  private readonly now: () => number;

  constructor(private readonly opts: FactsCacheOptions) {
    this.now = opts.now ?? Date.now;
  }

  get(id: ImageId): Promise<ImageFacts> {
    const held = this.held.get(id);
    if (held !== undefined && this.now() - held.at < this.opts.ttlMs) return Promise.resolve(held.facts);
    let pending = this.asking.get(id);
    if (pending === undefined) {
      pending = this.ask(id).finally(() => this.asking.delete(id));
      this.asking.set(id, pending);
    }
    return pending;
  }

  private async ask(id: ImageId): Promise<ImageFacts> {
    try {
      const facts = await this.opts.fetch(id);
      this.held.set(id, { facts, at: this.now() });
      return facts;
    } catch (e) {
      const held = this.held.get(id);
      if (held === undefined || !isShifterError(e) || e.code !== 'UNREACHABLE') throw e;
      const ageSeconds = Math.round((this.now() - held.at) / 1000);
      this.opts.log.warn(
        { image: id, ageSeconds, err: describeError(e) },
        'image gateway unreachable: using the image facts (ACLs) last seen',
      );
      return held.facts;
    }
  }
}
