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
 */
import { ancestorsOf, normaliseEntryPath, normaliseLinkTarget } from './path-safety.js';
import { whiteoutMarker } from './whiteout.js';
import { MergeState, type Inode } from './merge-state.js';
import { UpperMask, type LayerIndex } from './layer-index.js';
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
  /** Content to read again: entry `ordinal` of `layer`, written as a regular file at `path`. */
  materialise: { layer: number; ordinal: number; path: string }[];
  /** Hard links to write last, each to a path already written. */
  links: { path: string; target: string }[];
}

export class NeedFullIndex extends Error {
  constructor(path: string) {
    super(`the base layer holds "${path}" more than once`);
    this.name = 'NeedFullIndex';
  }
}

export class FlattenPlanner {
  private readonly state = new MergeState();
  private readonly mask = new UpperMask();
  private readonly linked = new Set<Inode>();
  private readonly seen = new Set<string>();
  private readonly seenAncestors = new Set<string>();

  /** `indexes[i]` holds layer i's headers; only `indexes[0]` may be null. */
  constructor(private readonly indexes: readonly (LayerIndex | null)[]) {
    indexes.forEach((index, layer) => {
      if (index) this.mask.addLayer(layer, index);
      else if (layer !== 0) throw new Error(`layer ${layer} has no index`);
    });
  }

  beginLayer(layer: number): void {
    const index = this.indexes[layer];
    if (!index) return;
    for (const p of index.whiteouts) this.state.remove(p);
    for (const p of index.opaques) this.state.clearChildren(p);
  }

  decide(layer: number, ordinal: number, h: EntryHeader): Decision {
    const n = normaliseEntryPath(h.name);
    if (!n.ok) return { action: 'drop', path: h.name, reason: n.reason };
    const path = n.path;
    const marker = whiteoutMarker(path);
    if (marker) return marker.kind === 'invalid' ? { action: 'drop', path, reason: 'reserved whiteout name' } : { action: 'skip' };

    const index = this.indexes[layer];
    if (!index) this.noteUnindexed(path, h.kind === 'dir');
    const visible = !this.mask.hiddenAbove(layer, path) && !(index?.supersededInLayer(path, ordinal) ?? false);

    if (path === '') {
      if (h.kind !== 'dir') return { action: 'drop', path: './', reason: 'the image root must be a directory' };
      return visible ? { action: 'emit', path } : { action: 'skip' };
    }
    const parents = this.state.checkParents(path);
    if (!parents.ok) return { action: 'drop', path, reason: parents.reason };

    switch (h.kind) {
      case 'char-device': case 'block-device':
        this.state.remove(path);
        return { action: 'drop', path, reason: `${h.kind === 'char-device' ? 'character' : 'block'} device node` };
      case 'other':
        this.state.remove(path);
        return { action: 'drop', path, reason: 'unsupported tar entry type' };
      case 'hardlink': return this.hardLink(path, h.linkname ?? '', visible);
      case 'file': {
        const inode: Inode = { layer, ordinal, primary: visible ? path : null, links: [] };
        this.state.set(path, { kind: 'file', inode });
        break;
      }
      case 'dir': this.state.set(path, { kind: 'dir', children: new Map() }); break;
      case 'symlink':
        if (!h.linkname) { this.state.remove(path); return { action: 'drop', path, reason: 'symbolic link with an empty target' }; }
        this.state.set(path, { kind: 'symlink' });
        break;
      case 'fifo': this.state.set(path, { kind: 'special' }); break;
    }
    return visible ? { action: 'emit', path } : { action: 'skip' };
  }

  finish(): FinishPlan {
    const plan: FinishPlan = { materialise: [], links: [] };
    for (const inode of this.linked) {
      const names = [...inode.links];
      const primary = inode.primary ?? names.shift()!;
      if (inode.primary === null) plan.materialise.push({ layer: inode.layer, ordinal: inode.ordinal, path: primary });
      for (const path of names) plan.links.push({ path, target: primary });
    }
    return plan;
  }

  private hardLink(path: string, linkname: string, visible: boolean): Decision {
    const t = normaliseLinkTarget(linkname);
    if (!t.ok) { this.state.remove(path); return { action: 'drop', path, reason: t.reason }; }
    const target = this.state.lookup(t.path);
    if (target?.kind !== 'file') {
      this.state.remove(path);
      return { action: 'drop', path, reason: `hard link target "${t.path}" is not a regular file present in the image at this point` };
    }
    this.state.set(path, { kind: 'file', inode: target.inode });
    if (!visible) return { action: 'skip' };
    target.inode.links.push(path);
    this.linked.add(target.inode);
    return { action: 'defer' };
  }

  private noteUnindexed(path: string, isDir: boolean): void {
    if (this.seen.has(path) || (!isDir && this.seenAncestors.has(path))) throw new NeedFullIndex(path);
    this.seen.add(path);
    for (const a of ancestorsOf(path)) this.seenAncestors.add(a);
  }
}
