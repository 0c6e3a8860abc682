/**
 * What the upper layers of an image do to the ones below, gathered from their headers alone.
 * With it, a lower-layer entry can be judged while it streams past: it survives unless a later
 * layer (or a later entry of its own layer) replaces it, whites it out, hides it under an opaque
 * directory or puts a non-directory at one of its ancestors.
 * Kept in a PathDb: `layer_paths` (each layer's last positions per path), `markers` (its
 * whiteouts and opaque directories) and `mask` (the highest layer doing each thing to a path).
 */
import type { Statement } from 'better-sqlite3';
import { ancestorsOf, normaliseEntryPath } from './path-safety.js';
import { whiteoutMarker } from './whiteout.js';
import { PAGE_ROWS, type PathDb } from './path-db.js';
import type { EntryHeader } from './entry.js';

const WHITEOUT = 0;
const OPAQUE = 1;

interface LastRow {
  path: string;
  last: number;
  last_nondir: number;
}
interface MaskRow {
  path: string;
  entry_top: number;
  nondir_top: number;
  whiteout_top: number;
  opaque_top: number;
}

/** One layer's headers: positions are the entry's ordinal in the layer tar. */
export class LayerIndex {
  private readonly putLast: Statement<[number, string, number, number]>;
  private readonly putMarker: Statement<[number, number, string]>;
  private readonly raise: Statement<[string, number, number, number, number]>;
  private readonly lastOf: Statement<[number, string], LastRow>;
  private readonly markersFrom: Statement<[number, number, string, number], { path: string }>;
  private readonly markersAfter: Statement<[number, number, string, number], { path: string }>;

  constructor(
    paths: PathDb,
    readonly layer: number,
  ) {
    const db = paths.db;
    this.putLast = db.prepare(`INSERT INTO layer_paths (layer, path, last, last_nondir) VALUES (?, ?, ?, ?)
      ON CONFLICT (layer, path) DO UPDATE SET last = excluded.last,
        last_nondir = max(last_nondir, excluded.last_nondir)`);
    this.putMarker = db.prepare('INSERT OR IGNORE INTO markers (layer, kind, path) VALUES (?, ?, ?)');
    this.raise =
      db.prepare(`INSERT INTO mask (path, entry_top, nondir_top, whiteout_top, opaque_top) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (path) DO UPDATE SET entry_top = max(entry_top, excluded.entry_top),
        nondir_top = max(nondir_top, excluded.nondir_top), whiteout_top = max(whiteout_top, excluded.whiteout_top),
        opaque_top = max(opaque_top, excluded.opaque_top)`);
    this.lastOf = db.prepare(`SELECT path, last, last_nondir FROM layer_paths
      WHERE layer = ? AND path IN (SELECT value FROM json_each(?))`);
    const page = (op: string) =>
      db.prepare<[number, number, string, number], { path: string }>(
        `SELECT path FROM markers WHERE layer = ? AND kind = ? AND path ${op} ? ORDER BY path LIMIT ?`,
      );
    this.markersFrom = page('>=');
    this.markersAfter = page('>');
  }

  /** Entries with an unsafe own path are left out: they are dropped and affect nothing. */
  add(ordinal: number, h: EntryHeader): void {
    const n = normaliseEntryPath(h.name);
    if (!n.ok) return;
    const l = this.layer;
    const marker = whiteoutMarker(n.path);
    if (marker?.kind === 'whiteout') {
      this.putMarker.run(l, WHITEOUT, marker.target);
      this.raise.run(marker.target, -1, -1, l, -1);
      return;
    }
    if (marker?.kind === 'opaque') {
      this.putMarker.run(l, OPAQUE, marker.dir);
      this.raise.run(marker.dir, -1, -1, -1, l);
      return;
    }
    if (marker) return;
    const nonDir = h.kind !== 'dir';
    this.putLast.run(l, n.path, ordinal, nonDir ? ordinal : -1);
    this.raise.run(n.path, l, nonDir ? l : -1, -1, -1);
  }

  /** True when a later entry of this same layer replaces the one at `ordinal`. */
  supersededInLayer(path: string, ordinal: number): boolean {
    for (const r of this.lastOf.all(this.layer, JSON.stringify([path, ...ancestorsOf(path)]))) {
      if ((r.path === path ? r.last : r.last_nondir) > ordinal) return true;
    }
    return false;
  }

  /** Paths this layer whites out, in pages. */
  whiteouts(): Iterable<string> {
    return this.markers(WHITEOUT);
  }

  /** Directories this layer makes opaque, in pages. */
  opaques(): Iterable<string> {
    return this.markers(OPAQUE);
  }

  private *markers(kind: number): Generator<string> {
    let rows = this.markersFrom.all(this.layer, kind, '', PAGE_ROWS);
    for (;;) {
      for (const r of rows) yield r.path;
      if (rows.length < PAGE_ROWS) return;
      rows = this.markersAfter.all(this.layer, kind, rows[rows.length - 1].path, PAGE_ROWS);
    }
  }
}

/** The union of all indexed layers' effects, each path tagged with the highest layer that has it. */
export class UpperMask {
  private readonly tops: Statement<[string], MaskRow>;

  constructor(paths: PathDb) {
    this.tops = paths.db.prepare(`SELECT path, entry_top, nondir_top, whiteout_top, opaque_top FROM mask
      WHERE path IN (SELECT value FROM json_each(?))`);
  }

  /** True when some layer above `layer` replaces or removes the entry at `path`. */
  hiddenAbove(layer: number, path: string): boolean {
    const keys = path === '' ? [''] : [path, '', ...ancestorsOf(path)];
    for (const r of this.tops.all(JSON.stringify(keys))) {
      if (r.path === path) {
        if (r.entry_top > layer || r.whiteout_top > layer) return true;
      } else if (r.path === '') {
        if (r.opaque_top > layer) return true;
      } else if (r.whiteout_top > layer || r.nondir_top > layer || r.opaque_top > layer) {
        return true;
      }
    }
    return false;
  }
}
