/**
 * Decides, entry by entry while the layers stream past bottom to top, what goes into the
 * flattened image, so that the result equals applying the layers one after another as OCI
 * defines (image-spec layer.md "Applying Changesets"):
 * - an entry survives unless a later layer, or a later entry of its own layer, replaces it,
 *   whites it out (`.wh.name`), hides it under an opaque directory (`.wh..wh..opq`) or puts a
 *   non-directory at one of its ancestors; a directory over a directory merges, the upper
 *   attributes winning;
 * - whiteouts and opaque markers act on lower layers only, never on their own layer;
 * - a hard link shares the content its target had when the link was applied, even when that
 *   name is replaced or removed later; if no visible name still carries that content, the first
 *   visible link gets it (`finish().materialise`) and the other links point there.
 * Refused (dropped, with a reason): absolute or `..` paths, paths through a symlink or a
 * non-directory planted earlier, hard links whose target is absolute, outside the tree, missing
 * or not a regular file, block and character devices, unknown entry types, reserved `.wh.` names.
 * A dropped entry still removes what lower layers had at its path (it was meant to replace it).
 * FIFOs are kept: on a nodev,nosuid mount they are plain named pipes, reaching nothing outside.
 *
 * Layer 0 (the base, usually the biggest) may be planned without an index; if it turns out to
 * hold the same path twice, `NeedFullIndex` is thrown and the caller starts over with one.
 *
 * Everything known per path lives in a PathDb (a scratch SQLite file), never in a structure on
 * the heap that grows with the image: memory stays flat whatever the number of entries.
 */
import type { Statement } from 'better-sqlite3';
import { normaliseEntryPath, normaliseLinkTarget } from './path-safety.js';
import { whiteoutMarker } from './whiteout.js';
import { MergeState, type Inode } from './merge-state.js';
import { UpperMask, type LayerIndex } from './layer-index.js';
import { PAGE_ROWS, subtreeRange, type PathDb } from './path-db.js';
import type { EntryHeader } from './entry.js';

export type Decision =
  /** Write the entry (with its content, for a file) at `path`. */
  | { action: 'emit'; path: string }
  /** Hidden by something later, or a whiteout marker: consume it silently. */
  | { action: 'skip' }
  /** Refused: consume it and warn. */
  | { action: 'drop'; path: string; reason: string }
  /** A visible hard link: written by the finish plan once every name is known. */
  | { action: 'defer' };

export interface FinishPlan {
  /** Content to read again from `layer`: entry `ordinal`, written as a regular file at `path` (by ordinal). */
  materialise(layer: number): Iterable<{ ordinal: number; path: string }>;
  /** Hard links to write last, each to a path already written. */
  links(): Iterable<{ path: string; target: string }>;
}

export class NeedFullIndex extends Error {
  constructor(path: string) {
    super(`the base layer holds "${path}" more than once`);
    this.name = 'NeedFullIndex';
  }
}

export class FlattenPlanner {
  private readonly state: MergeState;
  private readonly mask: UpperMask;
  private readonly links: HardLinks;
  private readonly seen: SeenPaths;
  private readonly topIndexed: number;

  /** `indexes[i]` holds layer i's headers, in `paths`; only `indexes[0]` may be null. */
  constructor(
    private readonly paths: PathDb,
    private readonly indexes: readonly (LayerIndex | null)[],
  ) {
    indexes.forEach((index, layer) => {
      if (!index && layer !== 0) throw new Error(`layer ${layer} has no index`);
    });
    this.topIndexed = indexes.reduce((top, index, layer) => (index ? layer : top), -1);
    this.state = new MergeState(paths);
    this.mask = new UpperMask(paths);
    this.links = new HardLinks(paths);
    this.seen = new SeenPaths(paths);
  }

  beginLayer(layer: number): void {
    const index = this.indexes[layer];
    if (!index) return;
    for (const p of index.whiteouts()) this.state.remove(p);
    for (const p of index.opaques()) this.state.clearChildren(p);
  }

  decide(layer: number, ordinal: number, h: EntryHeader): Decision {
    const n = normaliseEntryPath(h.name);
    if (!n.ok) return { action: 'drop', path: h.name, reason: n.reason };
    const path = n.path;
    const marker = whiteoutMarker(path);
    if (marker)
      return marker.kind === 'invalid'
        ? { action: 'drop', path, reason: 'reserved whiteout name' }
        : { action: 'skip' };

    const index = this.indexes[layer];
    if (!index) this.seen.note(path, h.kind === 'dir');
    const visible =
      !(layer < this.topIndexed && this.mask.hiddenAbove(layer, path)) &&
      !(index?.supersededInLayer(path, ordinal) ?? false);

    if (path === '') {
      if (h.kind !== 'dir') return { action: 'drop', path: './', reason: 'the image root must be a directory' };
      return visible ? { action: 'emit', path } : { action: 'skip' };
    }
    const parents = this.state.checkParents(path);
    if (!parents.ok) return { action: 'drop', path, reason: parents.reason };

    switch (h.kind) {
      case 'char-device':
      case 'block-device':
        this.state.remove(path);
        return { action: 'drop', path, reason: `${h.kind === 'char-device' ? 'character' : 'block'} device node` };
      case 'other':
        this.state.remove(path);
        return { action: 'drop', path, reason: 'unsupported tar entry type' };
      case 'hardlink':
        return this.hardLink(path, h.linkname ?? '', visible);
      case 'file':
        this.state.set(path, { kind: 'file', inode: { layer, ordinal, origin: visible ? path : null } });
        break;
      case 'dir':
        this.state.set(path, { kind: 'dir' });
        break;
      case 'symlink':
        if (!h.linkname) {
          this.state.remove(path);
          return { action: 'drop', path, reason: 'symbolic link with an empty target' };
        }
        this.state.set(path, { kind: 'symlink' });
        break;
      case 'fifo':
        this.state.set(path, { kind: 'special' });
        break;
    }
    return visible ? { action: 'emit', path } : { action: 'skip' };
  }

  /** Once every layer has been decided: what is left to write. Reads pages from the PathDb. */
  finish(): FinishPlan {
    this.links.plan();
    const db = this.paths.db;
    const materialisePage = db.prepare<[number, number, number], { ordinal: number; path: string }>(
      'SELECT ordinal, path FROM materialise WHERE layer = ? AND ordinal > ? ORDER BY ordinal LIMIT ?',
    );
    const linkPage = db.prepare<[number, number], { seq: number; path: string; target: string }>(
      'SELECT seq, path, target FROM plan_links WHERE seq > ? ORDER BY seq LIMIT ?',
    );
    return {
      materialise: (layer) =>
        paged(
          (after) => materialisePage.all(layer, after, PAGE_ROWS),
          (r) => r.ordinal,
        ),
      links: () =>
        mapped(
          paged(
            (after) => linkPage.all(after, PAGE_ROWS),
            (r) => r.seq,
          ),
          ({ path, target }) => ({
            path,
            target,
          }),
        ),
    };
  }

  private hardLink(path: string, linkname: string, visible: boolean): Decision {
    const t = normaliseLinkTarget(linkname);
    if (!t.ok) {
      this.state.remove(path);
      return { action: 'drop', path, reason: t.reason };
    }
    const target = this.state.lookup(t.path);
    if (target?.kind !== 'file') {
      this.state.remove(path);
      return {
        action: 'drop',
        path,
        reason: `hard link target "${t.path}" is not a regular file present in the image at this point`,
      };
    }
    this.state.set(path, { kind: 'file', inode: target.inode });
    if (!visible) return { action: 'skip' };
    this.links.add(target.inode, path);
    return { action: 'defer' };
  }
}

/** Rows of `page(after)`, page after page, each page starting after the key of the last row. */
function* paged<R>(page: (after: number) => R[], key: (r: R) => number): Generator<R> {
  let rows = page(-1);
  for (;;) {
    yield* rows;
    if (rows.length < PAGE_ROWS) return;
    rows = page(key(rows[rows.length - 1]));
  }
}

function* mapped<A, B>(rows: Iterable<A>, f: (a: A) => B): Generator<B> {
  for (const r of rows) yield f(r);
}

/** Paths met in the unindexed base layer: a second sighting means the base needs an index. */
class SeenPaths {
  private readonly put: Statement<[string]>;
  private readonly anyBelow: Statement<[string, string]>;

  constructor(paths: PathDb) {
    this.put = paths.db.prepare('INSERT OR IGNORE INTO seen (path) VALUES (?)');
    this.anyBelow = paths.db.prepare('SELECT 1 FROM seen WHERE path >= ? AND path < ? LIMIT 1');
  }

  /** Throws NeedFullIndex when `path` was seen before, or (for a non-directory) was an earlier entry's ancestor. */
  note(path: string, isDir: boolean): void {
    if (this.put.run(path).changes === 0) throw new NeedFullIndex(path);
    if (isDir || path === '') return;
    const { lo, hi } = subtreeRange(path);
    if (this.anyBelow.get(lo, hi) !== undefined) throw new NeedFullIndex(path);
  }
}

/**
 * Visible hard-link names per inode, in the order they were met. An inode is numbered by its
 * first link (`first_seq`), so the plan lists inodes in that order and each one's links in theirs.
 */
class HardLinks {
  private seq = 0;
  private readonly firstSeq: Statement<[number, number], { first_seq: number }>;
  private readonly putId: Statement<[number, number, number]>;
  private readonly putInode: Statement<[number, number, number, string | null]>;
  private readonly putLink: Statement<[number, number, string]>;
  private readonly pagePlan: Statement<
    [number, number, number],
    { first_seq: number; seq: number; path: string; layer: number; ordinal: number; origin: string | null }
  >;
  private readonly putMaterialise: Statement<[number, number, string]>;
  private readonly putPlanLink: Statement<[string, string]>;

  constructor(paths: PathDb) {
    const db = paths.db;
    this.firstSeq = db.prepare('SELECT first_seq FROM inode_ids WHERE layer = ? AND ordinal = ?');
    this.putId = db.prepare('INSERT INTO inode_ids (layer, ordinal, first_seq) VALUES (?, ?, ?)');
    this.putInode = db.prepare('INSERT INTO inodes (first_seq, layer, ordinal, origin) VALUES (?, ?, ?, ?)');
    this.putLink = db.prepare('INSERT INTO links (first_seq, seq, path) VALUES (?, ?, ?)');
    this.pagePlan = db.prepare(`SELECT l.first_seq, l.seq, l.path, i.layer, i.ordinal, i.origin
      FROM links l JOIN inodes i ON i.first_seq = l.first_seq
      WHERE (l.first_seq, l.seq) > (?, ?) ORDER BY l.first_seq, l.seq LIMIT ?`);
    this.putMaterialise = db.prepare('INSERT INTO materialise (layer, ordinal, path) VALUES (?, ?, ?)');
    this.putPlanLink = db.prepare('INSERT INTO plan_links (path, target) VALUES (?, ?)');
  }

  add(inode: Inode, path: string): void {
    this.seq += 1;
    let first = this.firstSeq.get(inode.layer, inode.ordinal)?.first_seq;
    if (first === undefined) {
      first = this.seq;
      this.putId.run(inode.layer, inode.ordinal, first);
      this.putInode.run(first, inode.layer, inode.ordinal, inode.origin);
    }
    this.putLink.run(first, this.seq, path);
  }

  /**
   * Fills `materialise` and `plan_links`: an inode whose own name is hidden gets its content
   * written under its first visible link, and its other links point there.
   */
  plan(): void {
    let current = -1;
    let primary = '';
    let after = [-1, -1] as [number, number];
    for (;;) {
      const rows = this.pagePlan.all(after[0], after[1], PAGE_ROWS);
      for (const r of rows) {
        if (r.first_seq !== current) {
          current = r.first_seq;
          if (r.origin !== null) primary = r.origin;
          else {
            primary = r.path;
            this.putMaterialise.run(r.layer, r.ordinal, r.path);
            continue;
          }
        }
        this.putPlanLink.run(r.path, primary);
      }
      if (rows.length < PAGE_ROWS) return;
      const last = rows[rows.length - 1];
      after = [last.first_seq, last.seq];
    }
  }
}
