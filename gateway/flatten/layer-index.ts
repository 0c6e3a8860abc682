/**
 * What the upper layers of an image do to the ones below, gathered from their headers alone.
 * With it, a lower-layer entry can be judged while it streams past: it survives unless a later
 * layer (or a later entry of its own layer) replaces it, whites it out, hides it under an opaque
 * directory or puts a non-directory at one of its ancestors.
 */
import { ancestorsOf, normaliseEntryPath } from './path-safety.js';
import { whiteoutMarker } from './whiteout.js';
import type { EntryHeader } from './entry.js';

/** One layer's headers: positions are the entry's ordinal in the layer tar. */
export class LayerIndex {
  /** Last position of an ordinary entry at each path. */
  readonly last = new Map<string, number>();
  /** Last position of a non-directory entry at each path. */
  readonly lastNonDir = new Map<string, number>();
  readonly whiteouts = new Set<string>();
  readonly opaques = new Set<string>();

  /** Entries with an unsafe own path are left out: they are dropped and affect nothing. */
  add(ordinal: number, h: EntryHeader): void {
    const n = normaliseEntryPath(h.name);
    if (!n.ok) return;
    const marker = whiteoutMarker(n.path);
    if (marker?.kind === 'whiteout') { this.whiteouts.add(marker.target); return; }
    if (marker?.kind === 'opaque') { this.opaques.add(marker.dir); return; }
    if (marker) return;
    this.last.set(n.path, ordinal);
    if (h.kind !== 'dir') this.lastNonDir.set(n.path, ordinal);
  }

  /** True when a later entry of this same layer replaces the one at `ordinal`. */
  supersededInLayer(path: string, ordinal: number): boolean {
    if ((this.last.get(path) ?? -1) > ordinal) return true;
    for (const a of ancestorsOf(path)) if ((this.lastNonDir.get(a) ?? -1) > ordinal) return true;
    return false;
  }
}

/** The union of all layers' effects, each path tagged with the highest layer that has it. */
export class UpperMask {
  private readonly entryTop = new Map<string, number>();
  private readonly nonDirTop = new Map<string, number>();
  private readonly whiteoutTop = new Map<string, number>();
  private readonly opaqueTop = new Map<string, number>();

  addLayer(layer: number, index: LayerIndex): void {
    const raise = (m: Map<string, number>, p: string) => { if ((m.get(p) ?? -1) < layer) m.set(p, layer); };
    for (const p of index.last.keys()) raise(this.entryTop, p);
    for (const p of index.lastNonDir.keys()) raise(this.nonDirTop, p);
    for (const p of index.whiteouts) raise(this.whiteoutTop, p);
    for (const p of index.opaques) raise(this.opaqueTop, p);
  }

  /** True when some layer above `layer` replaces or removes the entry at `path`. */
  hiddenAbove(layer: number, path: string): boolean {
    const above = (m: Map<string, number>, p: string) => (m.get(p) ?? -1) > layer;
    if (above(this.entryTop, path) || above(this.whiteoutTop, path)) return true;
    if (path !== '' && above(this.opaqueTop, '')) return true;
    for (const a of ancestorsOf(path)) {
      if (above(this.whiteoutTop, a) || above(this.nonDirTop, a) || above(this.opaqueTop, a)) return true;
    }
    return false;
  }
}
