/** The parts of a tar header that flattening looks at. */
export type EntryKind = 'file' | 'dir' | 'symlink' | 'hardlink' | 'fifo' | 'char-device' | 'block-device' | 'other';

export interface EntryHeader {
  /** The member name as stored in the layer (before normalisation). */
  name: string;
  kind: EntryKind;
  /** Hard-link target (member name) or symlink target. */
  linkname?: string;
}

export function entryKind(tarType: string | null | undefined): EntryKind {
  switch (tarType) {
    case 'file':
    case 'contiguous-file':
      return 'file';
    case 'directory':
      return 'dir';
    case 'symlink':
      return 'symlink';
    case 'link':
      return 'hardlink';
    case 'fifo':
      return 'fifo';
    case 'character-device':
      return 'char-device';
    case 'block-device':
      return 'block-device';
    default:
      return 'other';
  }
}
