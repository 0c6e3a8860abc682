/**
 * Where the flattening keeps what it knows per path: a scratch SQLite file, not the JS heap. An
 * image may hold millions of entries (one of 8 M empty files took the gateway to 6.45 GB and a
 * heap-out-of-memory crash); in the file the gateway's memory stays flat whatever the count,
 * because SQLite holds at most CACHE_KIB of pages in memory and the rest lives in the file (the
 * kernel's page cache, not the process). Measured against a compact on-heap encoding with a cap,
 * which still grows with the image (see BENCHMARKS.md, "Converting images of many entries").
 *
 * Nothing here has to survive a crash: no journal, no fsync, one transaction that is never
 * committed; the file is deleted on close. Paths are image-relative (`a/b`, root `''`), compared
 * bytewise, so the subtree of `p` is exactly the key range [`p/`, `p0`) ('0' follows '/').
 */
import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';

const CACHE_KIB = 16 * 1024;

const SCHEMA = `
CREATE TABLE state (path TEXT PRIMARY KEY, kind INTEGER NOT NULL, layer INTEGER, ordinal INTEGER, origin TEXT)
  WITHOUT ROWID;
CREATE TABLE seen (path TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE layer_paths (layer INTEGER NOT NULL, path TEXT NOT NULL, last INTEGER NOT NULL,
  last_nondir INTEGER NOT NULL, PRIMARY KEY (layer, path)) WITHOUT ROWID;
CREATE TABLE markers (layer INTEGER NOT NULL, kind INTEGER NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (layer, kind, path)) WITHOUT ROWID;
CREATE TABLE mask (path TEXT PRIMARY KEY, entry_top INTEGER NOT NULL, nondir_top INTEGER NOT NULL,
  whiteout_top INTEGER NOT NULL, opaque_top INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE inode_ids (layer INTEGER NOT NULL, ordinal INTEGER NOT NULL, first_seq INTEGER NOT NULL,
  PRIMARY KEY (layer, ordinal)) WITHOUT ROWID;
CREATE TABLE inodes (first_seq INTEGER PRIMARY KEY, layer INTEGER NOT NULL, ordinal INTEGER NOT NULL, origin TEXT);
CREATE TABLE links (first_seq INTEGER NOT NULL, seq INTEGER NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (first_seq, seq)) WITHOUT ROWID;
CREATE TABLE materialise (layer INTEGER NOT NULL, ordinal INTEGER NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (layer, ordinal)) WITHOUT ROWID;
CREATE TABLE plan_links (seq INTEGER PRIMARY KEY, path TEXT NOT NULL, target TEXT NOT NULL);
`;

/** Rows are read in pages of this many, so no result set is ever held whole. */
export const PAGE_ROWS = 1000;

export class PathDb {
  readonly db: Database.Database;

  /** `file`: a path in scratch space (removed first and on close), or ':memory:' for small tests. */
  constructor(private readonly file: string) {
    if (file !== ':memory:') rmSync(file, { force: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = OFF');
    this.db.pragma('synchronous = OFF');
    this.db.pragma('locking_mode = EXCLUSIVE');
    this.db.pragma('temp_store = FILE');
    this.db.pragma('mmap_size = 0');
    this.db.pragma(`cache_size = -${CACHE_KIB}`);
    this.db.exec(SCHEMA);
    this.db.exec('BEGIN');
  }

  close(): void {
    if (this.db.open) this.db.close();
    if (this.file !== ':memory:') rmSync(this.file, { force: true });
  }
}

/** The key range [lo, hi) holding the subtree strictly below `path` (not the root: callers take all). */
export function subtreeRange(path: string): { lo: string; hi: string } {
  return { lo: `${path}/`, hi: `${path}0` };
}
