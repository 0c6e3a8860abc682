/**
 * Where image records live. Two implementations with one contract (tests run against both):
 * SQLite (default, one local file, WAL + synchronous=FULL) and MongoDB (upstream's layout).
 */
import type { ImageStatus } from './status.js';
import type { CompletedPull, ImageRecord, MetricRecord, NewPull, RecordKey, RecordPatch } from './record.js';

export interface ImageStore {
  /** Creates a PENDING pull record, first deleting non-READY records for the same system/type/pulltag. */
  createPull(p: NewPull): Promise<ImageRecord>;
  get(key: RecordKey): Promise<ImageRecord | null>;
  /** The READY record carrying `tag` on system+type, seen through that tag: its ACL fields hold the tag's access. */
  findReadyByTag(system: string, itype: string, tag: string): Promise<ImageRecord | null>;
  /** The newest non-READY record pulled as `pulltag` (in flight or failed). */
  findPullByTag(system: string, itype: string, pulltag: string): Promise<ImageRecord | null>;
  /** The READY record of an image id; its ACL fields hold the union of its tags' access. */
  findReadyById(system: string, id: string): Promise<ImageRecord | null>;
  listReady(system: string): Promise<ImageRecord[]>;
  /** Records neither READY nor EXPIRED that have a pulltag (upstream's queue). */
  listQueue(system: string): Promise<ImageRecord[]>;
  listByStatus(statuses: readonly ImageStatus[]): Promise<ImageRecord[]>;
  update(key: RecordKey, patch: RecordPatch): Promise<void>;
  /**
   * Finishes a pull in one step: if a READY record with the same id exists on the system it takes
   * the new metadata, the tag and the tag's access (the record's ACL fields becoming the union of
   * its tags', see record.ts) and the pull record is deleted; otherwise the pull record becomes
   * READY. The tag moves off every other record of the system+type. Returns the READY record.
   */
  completePull(key: RecordKey, result: CompletedPull): Promise<ImageRecord>;
  /**
   * READY records of `system` whose `expiration` is before `now` (epoch s), in key order after
   * `afterKey` (null: from the start), at most `limit`: autoexpire walks them in batches.
   */
  listExpiredBefore(system: string, now: number, afterKey: RecordKey | null, limit: number): Promise<ImageRecord[]>;
  /** Takes `tag` and its grants off record `key` (the record's other tags stay); returns the record. */
  removeTag(key: RecordKey, tag: string): Promise<ImageRecord>;
  /** Deletes FAILURE records whose last_pull is older than `cutoff` (epoch s); returns the count. */
  deleteFailuresBefore(cutoff: number): Promise<number>;
  delete(key: RecordKey): Promise<void>;
  addMetric(m: MetricRecord): Promise<void>;
  /** The last `limit` metrics of a system, oldest first. */
  listMetrics(system: string, limit: number): Promise<MetricRecord[]>;
  close(): Promise<void>;
}
