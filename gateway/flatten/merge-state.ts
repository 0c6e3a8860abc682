/**
 * The image tree as it stands after each applied entry, hidden ones included: it answers
 * "does this path go through a symlink or a file planted earlier?" and "what does this hard link
 * point at right now?". Regular files carry their inode (the layer and ordinal of the entry with
 * the content, and the name it is emitted under) so hard links made in later layers keep the
 * content they linked to even when the original name is replaced afterwards.
 * One row per path in the `state` table of a PathDb; a missing parent is created as a directory.
 */
import type { Statement } from 'better-sqlite3';
import { ancestorsOf, parentOf } from './path-safety.js';
import { subtreeRange, type PathDb } from './path-db.js';

export interface Inode {
  /** Where the content is: layer number and entry ordinal of the regular file. */
  layer: number;
  ordinal: number;
  /** Path the content is emitted under in the image; null while no visible name carries it. */
  origin: string | null;
}

export type StateNode = { kind: 'dir' } | { kind: 'file'; inode: Inode } | { kind: 'symlink' } | { kind: 'special' };

export type ParentCheck = { ok: true } | { ok: false; reason: string };

const KIND = { dir: 1, file: 2, symlink: 3, special: 4 } as const;
type KindCode = (typeof KIND)[keyof typeof KIND];

interface Row {
  path: string;
  kind: KindCode;
  layer: number | null;
  ordinal: number | null;
  origin: string | null;
}

export class MergeState {
  private readonly get: Statement<[string], Row>;
  private readonly getMany: Statement<[string], Row>;
  private readonly put: Statement<[string, number, number | null, number | null, string | null]>;
  private readonly putDirIfMissing: Statement<[string]>;
  private readonly del: Statement<[string]>;
  private readonly delRange: Statement<[string, string]>;
  private readonly delAll: Statement<[]>;
  /**
   * A directory known to exist with only directories above it, so entries inside it (the usual
   * case: a tar lists a directory's members together) skip the ancestor queries. Forgotten on any
   * removal and whenever a non-directory replaces a directory.
   */
  private knownDir: string | null = null;

  constructor(paths: PathDb) {
    const db = paths.db;
    this.get = db.prepare('SELECT path, kind, layer, ordinal, origin FROM state WHERE path = ?');
    this.getMany = db.prepare(
      'SELECT path, kind, layer, ordinal, origin FROM state WHERE path IN (SELECT value FROM json_each(?))',
    );
    this.put = db.prepare('INSERT OR REPLACE INTO state (path, kind, layer, ordinal, origin) VALUES (?, ?, ?, ?, ?)');
    this.putDirIfMissing = db.prepare(`INSERT OR IGNORE INTO state (path, kind) VALUES (?, ${KIND.dir})`);
    this.del = db.prepare('DELETE FROM state WHERE path = ?');
    this.delRange = db.prepare('DELETE FROM state WHERE path >= ? AND path < ?');
    this.delAll = db.prepare('DELETE FROM state');
  }

  /** Node at `path`, never following symlinks; undefined when absent. */
  lookup(path: string): StateNode | undefined {
    if (path === '') return { kind: 'dir' };
    const row = this.get.get(path);
    return row ? nodeOf(row) : undefined;
  }

  /** Whether an entry may be created at `path`: every existing ancestor must be a real directory. */
  checkParents(path: string): ParentCheck {
    const ancestors = ancestorsOf(path);
    if (ancestors.length === 0 || parentOf(path) === this.knownDir) return { ok: true };
    const rows = new Map(this.getMany.all(JSON.stringify(ancestors)).map((r) => [r.path, r.kind]));
    for (const at of ancestors) {
      const kind = rows.get(at);
      if (kind === undefined) return { ok: true };
      if (kind === KIND.symlink)
        return { ok: false, reason: `the path goes through the symbolic link "${at}" planted by an earlier entry` };
      if (kind !== KIND.dir) return { ok: false, reason: `"${at}" is not a directory` };
    }
    return { ok: true };
  }

  /** Puts `node` at `path`, creating missing parents; a directory over a directory keeps its children. */
  set(path: string, node: StateNode): void {
    if (path === '') return;
    const parent = parentOf(path);
    if (parent !== this.knownDir) {
      for (const a of ancestorsOf(path)) this.putDirIfMissing.run(a);
      this.knownDir = parent;
    }
    const old = this.get.get(path);
    if (old?.kind === KIND.dir) {
      if (node.kind === 'dir') return;
      this.removeBelow(path);
    }
    const inode = node.kind === 'file' ? node.inode : null;
    this.put.run(path, KIND[node.kind], inode?.layer ?? null, inode?.ordinal ?? null, inode?.origin ?? null);
  }

  /** Removes `path` and its subtree (whiteout, or a dropped entry that still replaces it). */
  remove(path: string): void {
    this.knownDir = null;
    if (path === '') {
      this.delAll.run();
      return;
    }
    this.del.run(path);
    this.removeBelow(path);
  }

  /** Empties directory `path` (opaque marker). */
  clearChildren(path: string): void {
    if (path === '') {
      this.remove('');
      return;
    }
    if (this.get.get(path)?.kind === KIND.dir) this.removeBelow(path);
  }

  private removeBelow(path: string): void {
    this.knownDir = null;
    const { lo, hi } = subtreeRange(path);
    this.delRange.run(lo, hi);
  }
}

function nodeOf(row: Row): StateNode {
  switch (row.kind) {
    case KIND.dir:
      return { kind: 'dir' };
    case KIND.file:
      return { kind: 'file', inode: { layer: row.layer!, ordinal: row.ordinal!, origin: row.origin } };
    case KIND.symlink:
      return { kind: 'symlink' };
    default:
      return { kind: 'special' };
  }
}
