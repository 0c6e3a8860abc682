/**
 * Expiring images: a tag, a whole image, or (autoexpire) every image not looked up for
 * ImageExpirationTimeout. An image's files go only when no READY record of any system using the
 * same imageDir still holds its id; a tag of an image that keeps other tags is just taken off.
 * Files are removed under the image's lock (no pull of the same id writes them meanwhile), the
 * `.meta` first: meta present means complete, so nothing passes for ready once removal starts.
 * Running containers keep their mounts (a loop device holds the unlinked file open).
 * Autoexpire walks the store in batches and yields between them, so pulls and lookups go on.
 */
import { setImmediate as yieldToEvents } from 'node:timers/promises';
import { describeError, ShifterError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { Session } from '../auth/session.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';
import { imageTarget } from '../transfer/image-target.js';
import type { ImageStore } from '../store/image-store.js';
import type { ImageRecord, RecordKey } from '../store/record.js';
import { IN_FLIGHT } from '../store/status.js';
import { assertMayExpire, type ExpiryTarget } from './rules.js';

/** Records autoexpire reads (and expires) per step before it lets other requests run. */
export const AUTOEXPIRE_BATCH = 200;

export interface ExpiryDeps {
  config: GatewayConfig;
  store: ImageStore;
  log: Logger;
  /** The pull manager's per-image lock. */
  withImageLock<T>(system: string, id: string, fn: () => Promise<T>): Promise<T>;
  /** Whether this gateway is working on record `key`. */
  isActive(key: RecordKey): boolean;
}

export type ExpiryOutcome =
  /** The tag was taken off; the image keeps its other tags and its files. */
  | { kind: 'untagged'; record: ImageRecord }
  /** The record is EXPIRED; `filesRemoved` is false when another record still uses the files. */
  | { kind: 'expired'; record: ImageRecord; filesRemoved: boolean };

function notOnSystem(name: string, system: string): ShifterError {
  return new ShifterError('NOT_FOUND', `image ${name} is not on ${system}, so there is nothing to expire`);
}

export class Expiry {
  private readonly autoRuns = new Map<string, Promise<string[]>>();

  constructor(private readonly deps: ExpiryDeps) {}

  private now(): number {
    return Date.now() / 1000;
  }

  /** `expire`: the tag (or, for type `id`, the image) named, as `session` may. */
  async expire(platform: PlatformConfig, itype: string, tag: string, session: Session): Promise<ExpiryOutcome> {
    const { store } = this.deps;
    const system = platform.name;
    const name = `${itype}:${tag}`;
    const target: ExpiryTarget = itype === 'id' ? { kind: 'image' } : { kind: 'tag', tag };
    const found =
      target.kind === 'image' ? await store.findReadyById(system, tag) : await store.findReadyByTag(system, itype, tag);
    if (!found?.id) throw notOnSystem(name, system);
    assertMayExpire(found, target, session);
    const by = session.identity?.user ?? 'an admin';
    return this.deps.withImageLock(system, found.id, async () => {
      const rec = await store.get(found.key);
      if (!rec || rec.status !== 'READY') throw notOnSystem(name, system);
      if (target.kind === 'tag' && rec.tag.some((t) => t !== tag)) {
        const record = await store.removeTag(rec.key, tag);
        this.deps.log.info({ system, tag, id: rec.id, by }, 'tag expired; the image keeps its other tags');
        return { kind: 'untagged', record };
      }
      return this.expireLocked(rec, `Expired by ${by}`);
    });
  }

  /** EXPIRING, files removed unless still used, EXPIRED. Called under the image's lock. */
  private async expireLocked(rec: ImageRecord, why: string): Promise<ExpiryOutcome> {
    const { store, config, log } = this.deps;
    const platform = config.platforms[rec.system];
    const id = rec.id;
    if (!platform || !id) throw new ShifterError('INTERNAL', `record ${rec.key} has no system or id to expire`);
    await store.update(rec.key, { status: 'EXPIRING', status_message: why, last_heartbeat: this.now() });
    let filesRemoved = false;
    try {
      if (!(await this.usedElsewhere(platform, id, rec.key))) {
        await imageTarget(platform).remove(id);
        filesRemoved = true;
      }
    } catch (e) {
      const message = `expiry could not remove the files of ${id} from ${platform.name}'s imageDir: ${describeError(e)}`;
      await store.update(rec.key, { status: 'FAILURE', status_message: message, last_heartbeat: this.now() });
      throw new ShifterError('IO_ERROR', message);
    }
    await store.update(rec.key, { status: 'EXPIRED', status_message: why, last_heartbeat: this.now() });
    log.info({ system: rec.system, id, tags: rec.tag, filesRemoved }, why);
    return { kind: 'expired', record: (await store.get(rec.key)) ?? rec, filesRemoved };
  }

  /** Another READY record of a system sharing this imageDir holds the id. */
  private async usedElsewhere(platform: PlatformConfig, id: string, key: RecordKey): Promise<boolean> {
    for (const other of Object.values(this.deps.config.platforms)) {
      if (other.imageDir !== platform.imageDir) continue;
      const holder = await this.deps.store.findReadyById(other.name, id);
      if (holder && holder.key !== key) return true;
    }
    return false;
  }

  /**
   * `autoexpire`: drops dead pulls (no heartbeat for HeartbeatTimeout, not running here) and
   * FAILURE records past PullUpdateTimeout, then expires every READY image of the system whose
   * expiration has passed. Returns the ids expired. One run per system at a time: a second
   * request joins the running one.
   */
  autoexpire(system: string): Promise<string[]> {
    const running = this.autoRuns.get(system);
    if (running) return running;
    const run = this.autoexpireRun(system).finally(() => this.autoRuns.delete(system));
    this.autoRuns.set(system, run);
    return run;
  }

  private async autoexpireRun(system: string): Promise<string[]> {
    const { store, config, log } = this.deps;
    const startedAt = this.now();
    await store.deleteFailuresBefore(startedAt - Math.max(config.pullUpdateTimeoutSec, 10));
    for (const rec of await store.listByStatus([...IN_FLIGHT, 'INIT'])) {
      const seen = rec.last_heartbeat ?? rec.last_pull ?? 0;
      if (rec.system !== system || this.deps.isActive(rec.key)) continue;
      if (seen + config.heartbeatTimeoutSec < startedAt) await store.delete(rec.key);
    }
    const expired: string[] = [];
    let after: RecordKey | null = null;
    for (;;) {
      const batch: ImageRecord[] = await store.listExpiredBefore(system, startedAt, after, AUTOEXPIRE_BATCH);
      if (batch.length === 0) break;
      after = batch[batch.length - 1].key;
      for (const found of batch) {
        if (!found.id) continue;
        try {
          const outcome = await this.deps.withImageLock(system, found.id, async () => {
            const rec = await store.get(found.key);
            const still = rec?.status === 'READY' && rec.expiration !== null && rec.expiration < this.now();
            return still ? this.expireLocked(rec, 'Expired: not used for ImageExpirationTimeout') : null;
          });
          if (outcome) expired.push(found.id);
        } catch (e) {
          log.error({ system, id: found.id, err: describeError(e) }, 'autoexpire could not expire an image');
        }
      }
      await yieldToEvents();
    }
    log.info({ system, expired: expired.length, seconds: this.now() - startedAt }, 'autoexpire done');
    return expired;
  }
}
