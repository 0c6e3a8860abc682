/**
 * The MongoDB store (used only when `MongoDBURI` is set), in upstream's layout: an `images`
 * collection with one document per record (`tag` a list) and a `metrics` collection.
 * Writes use majority/journaled write concern. Multi-document steps are ordered so that a crash
 * between them leaves a state the startup recovery handles (a tag is moved before the pull
 * record is deleted, never after).
 */
import { MongoClient, ObjectId, type Collection, type Db, type Document } from 'mongodb';
import { asShifterError, ShifterError } from '../../common/errors.js';
import type { ImageStatus } from './status.js';
import type { ImageStore } from './image-store.js';
import {
  completedFields,
  newPullRecord,
  throughTag,
  withGrants,
  type CompletedPull,
  type ImageRecord,
  type MetricRecord,
  type NewPull,
  type RecordKey,
  type RecordPatch,
} from './record.js';

type ImageDoc = Omit<ImageRecord, 'key'> & { _id: ObjectId };

function toRecord(doc: ImageDoc | null): ImageRecord | null {
  if (!doc) return null;
  const { _id, ...rest } = doc;
  const tag = Array.isArray(rest.tag) ? rest.tag : rest.tag ? [rest.tag as unknown as string] : [];
  return withGrants({ ...rest, tag, key: _id.toHexString() as RecordKey });
}

function oid(key: RecordKey): ObjectId {
  if (!ObjectId.isValid(key)) throw new ShifterError('NOT_FOUND', `image record ${key} does not exist`);
  return new ObjectId(key);
}

export class MongoImageStore implements ImageStore {
  private constructor(
    private readonly client: MongoClient,
    private readonly images: Collection<ImageDoc>,
    private readonly metrics: Collection<Document>,
  ) {}

  static async connect(uri: string, dbName: string): Promise<MongoImageStore> {
    const client = new MongoClient(uri, {
      serverSelectionTimeoutMS: 10_000,
      writeConcern: { w: 'majority', journal: true },
    });
    try {
      await client.connect();
      const db: Db = client.db(dbName);
      const images = db.collection<ImageDoc>('images');
      await images.createIndex({ system: 1, itype: 1, pulltag: 1, status: 1 });
      await images.createIndex({ system: 1, itype: 1, tag: 1 });
      await images.createIndex({ system: 1, id: 1 });
      await images.createIndex({ system: 1, status: 1, expiration: 1 });
      return new MongoImageStore(client, images, db.collection('metrics'));
    } catch (e) {
      await client.close().catch(() => undefined);
      throw asShifterError(
        e,
        'UNREACHABLE',
        `cannot connect to MongoDB at ${uri.replace(/\/\/[^@/]*@/, '//***@')} (check MongoDBURI, or remove it to use the SQLite store)`,
      );
    }
  }

  async createPull(p: NewPull): Promise<ImageRecord> {
    await this.images.deleteMany({ system: p.system, itype: p.itype, pulltag: p.pulltag, status: { $ne: 'READY' } });
    const _id = new ObjectId();
    const rec = newPullRecord(_id.toHexString() as RecordKey, p);
    const { key: _key, ...doc } = rec;
    await this.images.insertOne({ ...doc, _id });
    return rec;
  }

  async get(key: RecordKey): Promise<ImageRecord | null> {
    return toRecord(await this.images.findOne({ _id: oid(key) }));
  }

  async findReadyByTag(system: string, itype: string, tag: string): Promise<ImageRecord | null> {
    const rec = toRecord(await this.images.findOne({ system, itype, tag: { $in: [tag] }, status: 'READY' }));
    return rec && throughTag(rec, tag);
  }

  async findPullByTag(system: string, itype: string, pulltag: string): Promise<ImageRecord | null> {
    return toRecord(
      await this.images.findOne({ system, itype, pulltag, status: { $ne: 'READY' } }, { sort: { last_pull: -1 } }),
    );
  }

  async findReadyById(system: string, id: string): Promise<ImageRecord | null> {
    return toRecord(await this.images.findOne({ system, id, status: 'READY' }));
  }

  async listReady(system: string): Promise<ImageRecord[]> {
    return (await this.images.find({ system, status: 'READY' }).sort({ last_pull: 1 }).toArray()).map((d) =>
      toRecord(d)!,
    );
  }

  async listQueue(system: string): Promise<ImageRecord[]> {
    return (
      await this.images
        .find({ system, status: { $nin: ['READY', 'EXPIRED'] }, pulltag: { $exists: true, $ne: '' } })
        .sort({ last_pull: 1 })
        .toArray()
    ).map((d) => toRecord(d)!);
  }

  async listByStatus(statuses: readonly ImageStatus[]): Promise<ImageRecord[]> {
    return (
      await this.images
        .find({ status: { $in: [...statuses] } })
        .sort({ last_pull: 1 })
        .toArray()
    ).map((d) => toRecord(d)!);
  }

  async update(key: RecordKey, patch: RecordPatch): Promise<void> {
    const r = await this.images.updateOne({ _id: oid(key) }, { $set: patch });
    if (r.matchedCount === 0) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
  }

  async completePull(key: RecordKey, result: CompletedPull): Promise<ImageRecord> {
    const pull = await this.get(key);
    if (!pull) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
    const existing = toRecord(
      await this.images.findOne({ system: pull.system, id: result.id, status: 'READY', _id: { $ne: oid(key) } }),
    );
    const target = existing ?? pull;
    await this.images.updateMany({ system: pull.system, itype: pull.itype }, { $pull: { tag: pull.pulltag } });
    await this.images.updateOne(
      { _id: oid(target.key) },
      {
        $set: completedFields(result, pull, existing),
        $addToSet: { tag: pull.pulltag },
      },
    );
    if (existing) await this.images.deleteOne({ _id: oid(key) });
    return (await this.get(target.key))!;
  }

  async listExpiredBefore(
    system: string,
    now: number,
    afterKey: RecordKey | null,
    limit: number,
  ): Promise<ImageRecord[]> {
    const after = afterKey === null ? {} : { _id: { $gt: oid(afterKey) } };
    const docs = await this.images
      .find({ system, status: 'READY', expiration: { $lt: now }, ...after })
      .sort({ _id: 1 })
      .limit(limit)
      .toArray();
    return docs.map((d) => toRecord(d)!);
  }

  async removeTag(key: RecordKey, tag: string): Promise<ImageRecord> {
    const r = await this.images.updateOne({ _id: oid(key) }, { $pull: { tag, grants: { tag } } });
    if (r.matchedCount === 0) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
    return (await this.get(key))!;
  }

  async deleteFailuresBefore(cutoff: number): Promise<number> {
    return (await this.images.deleteMany({ status: 'FAILURE', last_pull: { $lt: cutoff } })).deletedCount;
  }

  async delete(key: RecordKey): Promise<void> {
    await this.images.deleteOne({ _id: oid(key) });
  }

  async addMetric(m: MetricRecord): Promise<void> {
    await this.metrics.insertOne({ ...m });
  }

  async listMetrics(system: string, limit: number): Promise<MetricRecord[]> {
    const docs = await this.metrics.find({ system }).sort({ _id: -1 }).limit(limit).toArray();
    return docs.reverse().map(({ _id, ...m }) => m as MetricRecord);
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
