/**
 * Where a squashfs image keeps its metadata. mksquashfs/tar2sqfs write the data blocks first and
 * the inode, directory, fragment, export, id and xattr tables after them, up to `bytes_used`: a
 * metadata walk (ls, stat, Python's import path search) reads only the superblock and that tail.
 */
import { ShifterError } from '../../common/errors.js';

export const SQUASHFS_SUPERBLOCK_BYTES = 96;
const SQUASHFS_MAGIC = 0x73717368;

export interface SquashfsTables {
  /** Offset of the inode table, the first of the tables at the end. */
  readonly tablesStart: number;
  /** bytes_used: the end of the filesystem (the file may be padded past it). */
  readonly end: number;
}

/** Reads the table offsets from the 96-byte superblock at the start of the image. */
export function squashfsTables(superblock: Buffer): SquashfsTables {
  if (superblock.length < SQUASHFS_SUPERBLOCK_BYTES || superblock.readUInt32LE(0) !== SQUASHFS_MAGIC) {
    throw new ShifterError('BAD_ARGUMENT', 'the image does not start with a squashfs superblock');
  }
  const at = (offset: number): number => Number(superblock.readBigUInt64LE(offset));
  const end = at(40);
  // inode_table_start, directory_table_start, fragment, export (lookup), id, xattr-id table
  // starts; absent tables are all ones.
  const starts = [64, 72, 80, 88, 48, 56].map(at).filter((v) => v < end);
  if (starts.length === 0) throw new ShifterError('BAD_ARGUMENT', 'the squashfs superblock names no tables');
  return { tablesStart: Math.min(...starts), end };
}
