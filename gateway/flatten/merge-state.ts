/**
 * The image tree as it stands after each applied entry, hidden ones included: it answers
 * "does this path go through a symlink or a file planted earlier?" and "what does this hard link
 * point at right now?". Regular files carry an inode record so hard links made in later layers
 * keep the content they linked to even when the original name is replaced afterwards.
 */
import { baseNameOf, parentOf } from './path-safety.js';

export interface Inode {
  /** Where the content is: layer number and entry ordinal of the regular file. */
  layer: number;
  ordinal: number;
  /** Path the content is emitted under in the image; null while no visible name carries it. */
  primary: string | null;
  /** Visible hard-link names still to be emitted, in order. */
  links: string[];
}

export type StateNode =
  | { kind: 'dir'; children: Map<string, StateNode> }
  | { kind: 'file'; inode: Inode }
  | { kind: 'symlink' }
  | { kind: 'special' };

export type ParentCheck = { ok: true } | { ok: false; reason: string };

export class MergeState {
  private readonly root: StateNode & { kind: 'dir' } = { kind: 'dir', children: new Map() };

  /** Node at `path`, never following symlinks; undefined when absent. */
  lookup(path: string): StateNode | undefined {
    if (path === '') return this.root;
    let node: StateNode = this.root;
    for (const part of path.split('/')) {
      if (node.kind !== 'dir') return undefined;
      const next = node.children.get(part);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  /** Whether an entry may be created at `path`: every existing ancestor must be a real directory. */
  checkParents(path: string): ParentCheck {
    if (path === '') return { ok: true };
    let node: StateNode = this.root;
    const parts = path.split('/');
    for (let i = 0; i < parts.length - 1; i++) {
      if (node.kind !== 'dir') break;
      const next = node.children.get(parts[i]!);
      if (!next) return { ok: true };
      const at = parts.slice(0, i + 1).join('/');
      if (next.kind === 'symlink') return { ok: false, reason: `the path goes through the symbolic link "${at}" planted by an earlier entry` };
      if (next.kind !== 'dir') return { ok: false, reason: `"${at}" is not a directory` };
      node = next;
    }
    return { ok: true };
  }

  /** Puts `node` at `path`, creating missing parents; a directory over a directory keeps its children. */
  set(path: string, node: StateNode): void {
    if (path === '') return;
    const parent = this.dirFor(parentOf(path));
    const name = baseNameOf(path);
    const old = parent.children.get(name);
    if (old?.kind === 'dir' && node.kind === 'dir') return;
    parent.children.set(name, node);
  }

  /** Removes `path` and its subtree (whiteout, or a dropped entry that still replaces it). */
  remove(path: string): void {
    if (path === '') { this.root.children.clear(); return; }
    const parent = this.lookup(parentOf(path));
    if (parent?.kind === 'dir') parent.children.delete(baseNameOf(path));
  }

  /** Empties directory `path` (opaque marker). */
  clearChildren(path: string): void {
    const node = this.lookup(path);
    if (node?.kind === 'dir') node.children.clear();
  }

  private dirFor(path: string): StateNode & { kind: 'dir' } {
    let node: StateNode & { kind: 'dir' } = this.root;
    if (path === '') return node;
    for (const part of path.split('/')) {
      let next = node.children.get(part);
      if (!next || next.kind !== 'dir') {
        next = { kind: 'dir', children: new Map() };
        node.children.set(part, next);
      }
      node = next;
    }
    return node;
  }
}
