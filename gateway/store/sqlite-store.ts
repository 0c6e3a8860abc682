/**
 * The default store: one SQLite file. WAL + synchronous=FULL so a committed status survives a
 * kill -9 or power loss; every multi-row change is one transaction. Records are kept as JSON
 * documents with the queried fields copied into indexed columns; tags live in their own table
 * whose primary key enforces "a tag points at one record per system and type".
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { asShifterError, ShifterError } from '../../common/errors.js';
import { diskFullError } from '../../common/disk-full.js';
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

const SCHEMA = `
CREATE TABLE IF NOT EXISTS images (
  key TEXT PRIMARY KEY,
  system TEXT NOT NULL,
  itype TEXT NOT NULL,
  pulltag TEXT NOT NULL,
  status TEXT NOT NULL,
  id TEXT,
  last_pull REAL,
  expiration REAL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_pull ON images(system, itype, pulltag, status);
CREATE INDEX IF NOT EXISTS images_id ON images(system, id, status);
CREATE INDEX IF NOT EXISTS images_status ON images(status);
CREATE TABLE IF NOT EXISTS tags (
  system TEXT NOT NULL,
  itype TEXT NOT NULL,
  tag TEXT NOT NULL,
  key TEXT NOT NULL REFERENCES images(key) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  PRIMARY KEY (system, itype, tag)
);
CREATE INDEX IF NOT EXISTS tags_key ON tags(key);
CREATE TABLE IF NOT EXISTS metrics (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  system TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_system ON metrics(system, seq);
`;

interface Row {
  key: string;
  doc: string;
}

export class SqliteImageStore implements ImageStore {
  private readonly db: Database.Database;
  private tagSeq = 0;

  constructor(private readonly path: string) {
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      this.db = new Database(path);
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
      this.addExpirationColumn();
    } catch (e) {
      throw asShifterError(
        e,
        'IO_ERROR',
        `cannot open the metadata store ${path} (check MetadataStore/CacheDirectory permissions)`,
      );
    }
    const max = this.db.prepare('SELECT MAX(seq) AS m FROM tags').get() as { m: number | null };
    this.tagSeq = max.m ?? 0;
  }

  /**
   * Stores written before expiry existed have no `expiration` column: it is added and filled from
   * the documents, so autoexpire finds their images through the index.
   */
  private addExpirationColumn(): void {
    const columns = this.db.prepare('PRAGMA table_info(images)').all() as { name: string }[];
    if (!columns.some((c) => c.name === 'expiration')) {
      this.db.exec(`ALTER TABLE images ADD COLUMN expiration REAL;
        UPDATE images SET expiration = json_extract(doc, '$.expiration');`);
    }
    this.db.exec('CREATE INDEX IF NOT EXISTS images_expiry ON images(system, status, expiration)');
  }

  /** Runs a write; SQLITE_FULL becomes DISK_FULL naming the store's directory (REST answers 503). */
  private writing<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw diskFullError(e, dirname(this.path), 'MetadataStore') ?? e;
    }
  }

  private hydrate(row: Row | undefined): ImageRecord | null {
    if (!row) return null;
    const rec = JSON.parse(row.doc) as ImageRecord;
    rec.key = row.key as RecordKey;
    rec.tag = (
      this.db.prepare('SELECT tag FROM tags WHERE key = ? ORDER BY seq').all(row.key) as { tag: string }[]
    ).map((t) => t.tag);
    return withGrants(rec);
  }

  private write(rec: ImageRecord): void {
    const { tag: _tag, ...doc } = rec;
    this.db
      .prepare(
        `INSERT INTO images (key, system, itype, pulltag, status, id, last_pull, expiration, doc)
      VALUES (@key, @system, @itype, @pulltag, @status, @id, @last_pull, @expiration, @doc)
      ON CONFLICT(key) DO UPDATE SET status = excluded.status, id = excluded.id,
        last_pull = excluded.last_pull, expiration = excluded.expiration, doc = excluded.doc`,
      )
      .run({
        key: rec.key,
        system: rec.system,
        itype: rec.itype,
        pulltag: rec.pulltag,
        status: rec.status,
        id: rec.id,
        last_pull: rec.last_pull,
        expiration: rec.expiration ?? null,
        doc: JSON.stringify(doc),
      });
  }

  private getSync(key: RecordKey): ImageRecord | null {
    return this.hydrate(this.db.prepare('SELECT key, doc FROM images WHERE key = ?').get(key) as Row | undefined);
  }

  private addTag(rec: ImageRecord, tag: string): void {
    this.tagSeq += 1;
    this.db
      .prepare(
        `INSERT INTO tags (system, itype, tag, key, seq) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT(system, itype, tag) DO UPDATE SET key = excluded.key, seq = excluded.seq`,
      )
      .run(rec.system, rec.itype, tag, rec.key, this.tagSeq);
  }

  async createPull(p: NewPull): Promise<ImageRecord> {
    const rec = newPullRecord(randomUUID().replace(/-/g, '') as RecordKey, p);
    this.writing(() =>
      this.db.transaction(() => {
        this.db
          .prepare("DELETE FROM images WHERE system = ? AND itype = ? AND pulltag = ? AND status != 'READY'")
          .run(p.system, p.itype, p.pulltag);
        this.write(rec);
      })(),
    );
    return rec;
  }

  async get(key: RecordKey): Promise<ImageRecord | null> {
    return this.getSync(key);
  }

  async findReadyByTag(system: string, itype: string, tag: string): Promise<ImageRecord | null> {
    const rec = this.hydrate(
      this.db
        .prepare(
          `SELECT i.key, i.doc FROM tags t JOIN images i ON i.key = t.key
      WHERE t.system = ? AND t.itype = ? AND t.tag = ? AND i.status = 'READY'`,
        )
        .get(system, itype, tag) as Row | undefined,
    );
    return rec && throughTag(rec, tag);
  }

  async findPullByTag(system: string, itype: string, pulltag: string): Promise<ImageRecord | null> {
    return this.hydrate(
      this.db
        .prepare(
          `SELECT key, doc FROM images
      WHERE system = ? AND itype = ? AND pulltag = ? AND status != 'READY'
      ORDER BY last_pull DESC LIMIT 1`,
        )
        .get(system, itype, pulltag) as Row | undefined,
    );
  }

  async findReadyById(system: string, id: string): Promise<ImageRecord | null> {
    return this.hydrate(
      this.db
        .prepare("SELECT key, doc FROM images WHERE system = ? AND id = ? AND status = 'READY' LIMIT 1")
        .get(system, id) as Row | undefined,
    );
  }

  async listReady(system: string): Promise<ImageRecord[]> {
    return (
      this.db
        .prepare("SELECT key, doc FROM images WHERE system = ? AND status = 'READY' ORDER BY last_pull")
        .all(system) as Row[]
    ).map((r) => this.hydrate(r)!);
  }

  async listQueue(system: string): Promise<ImageRecord[]> {
    return (
      this.db
        .prepare(
          `SELECT key, doc FROM images WHERE system = ? AND status NOT IN ('READY', 'EXPIRED')
      AND pulltag != '' ORDER BY last_pull`,
        )
        .all(system) as Row[]
    ).map((r) => this.hydrate(r)!);
  }

  async listByStatus(statuses: readonly ImageStatus[]): Promise<ImageRecord[]> {
    if (statuses.length === 0) return [];
    const marks = statuses.map(() => '?').join(', ');
    return (
      this.db
        .prepare(`SELECT key, doc FROM images WHERE status IN (${marks}) ORDER BY last_pull`)
        .all(...statuses) as Row[]
    ).map((r) => this.hydrate(r)!);
  }

  async update(key: RecordKey, patch: RecordPatch): Promise<void> {
    this.writing(() =>
      this.db.transaction(() => {
        const rec = this.getSync(key);
        if (!rec) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
        this.write({ ...rec, ...patch });
      })(),
    );
  }

  async completePull(key: RecordKey, result: CompletedPull): Promise<ImageRecord> {
    return this.writing(() =>
      this.db.transaction(() => {
        const pull = this.getSync(key);
        if (!pull) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
        const existing = this.hydrate(
          this.db
            .prepare(
              `SELECT key, doc FROM images
        WHERE system = ? AND id = ? AND status = 'READY' AND key != ? LIMIT 1`,
            )
            .get(pull.system, result.id, key) as Row | undefined,
        );
        const target = existing ?? pull;
        const done: ImageRecord = { ...target, ...completedFields(result, pull, existing) };
        this.write(done);
        if (existing) this.db.prepare('DELETE FROM images WHERE key = ?').run(key);
        this.addTag(done, pull.pulltag);
        return this.getSync(done.key)!;
      })(),
    );
  }

  async listExpiredBefore(
    system: string,
    now: number,
    afterKey: RecordKey | null,
    limit: number,
  ): Promise<ImageRecord[]> {
    return (
      this.db
        .prepare(
          `SELECT key, doc FROM images WHERE system = ? AND status = 'READY' AND expiration < ? AND key > ?
      ORDER BY key LIMIT ?`,
        )
        .all(system, now, afterKey ?? '', limit) as Row[]
    ).map((r) => this.hydrate(r)!);
  }

  async removeTag(key: RecordKey, tag: string): Promise<ImageRecord> {
    return this.writing(() =>
      this.db.transaction(() => {
        const rec = this.getSync(key);
        if (!rec) throw new ShifterError('NOT_FOUND', `image record ${key} no longer exists`);
        this.db.prepare('DELETE FROM tags WHERE key = ? AND tag = ?').run(key, tag);
        this.write({ ...rec, grants: rec.grants.filter((g) => g.tag !== tag) });
        return this.getSync(key)!;
      })(),
    );
  }

  async deleteFailuresBefore(cutoff: number): Promise<number> {
    const stale = this.db.prepare("DELETE FROM images WHERE status = 'FAILURE' AND last_pull < ?");
    return this.writing(() => stale.run(cutoff).changes);
  }

  async delete(key: RecordKey): Promise<void> {
    this.writing(() => this.db.prepare('DELETE FROM images WHERE key = ?').run(key));
  }

  async addMetric(m: MetricRecord): Promise<void> {
    const insert = this.db.prepare('INSERT INTO metrics (system, doc) VALUES (?, ?)');
    this.writing(() => insert.run(m.system, JSON.stringify(m)));
  }

  async listMetrics(system: string, limit: number): Promise<MetricRecord[]> {
    const rows = this.db
      .prepare('SELECT doc FROM metrics WHERE system = ? ORDER BY seq DESC LIMIT ?')
      .all(system, limit) as { doc: string }[];
    return rows.reverse().map((r) => JSON.parse(r.doc) as MetricRecord);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
