/** OCI whiteout markers (image-spec layer.md): `.wh.<name>` and the opaque marker `.wh..wh..opq`. */
import { baseNameOf, parentOf } from './path-safety.js';

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_MARKER = '.wh..wh..opq';

export type Marker =
  /** Removes `target` (and its subtree) from lower layers. */
  | { kind: 'whiteout'; target: string }
  /** Hides everything lower layers hold inside `dir`; `dir` itself stays. */
  | { kind: 'opaque'; dir: string }
  /** `.wh.`, `.wh..` and the like: reserved names that whiteout nothing. */
  | { kind: 'invalid' };

/** Classifies a normalised path; null for an ordinary entry. */
export function whiteoutMarker(path: string): Marker | null {
  const base = baseNameOf(path);
  if (!base.startsWith(WHITEOUT_PREFIX)) return null;
  const dir = parentOf(path);
  if (base === OPAQUE_MARKER) return { kind: 'opaque', dir };
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (name === '' || name === '.' || name === '..') return { kind: 'invalid' };
  return { kind: 'whiteout', target: dir === '' ? name : `${dir}/${name}` };
}
