/**
 * Is this file a squashfs image the kernel can mount? Pure checks on the 96-byte superblock
 * (squashfs 4.0, little-endian) against the file's size, so a file that is not an image, or whose
 * tables point past its end, is refused at import rather than at mount time on every node.
 */
import { ShifterError } from '../../common/errors.js';

export const SUPERBLOCK_BYTES = 96;
const MAGIC = 0x73717368;
const MIN_BLOCK = 4096;
const MAX_BLOCK = 1 << 20;

export interface SquashfsSummary {
  inodes: number;
  blockSize: number;
  bytesUsed: number;
}

function refuse(path: string, why: string): ShifterError {
  return new ShifterError(
    'BAD_ARGUMENT',
    `${path} is not a usable squashfs image: ${why}; import a file made by mksquashfs or tar2sqfs`,
  );
}

export function checkSquashfsSuperblock(sb: Buffer, fileSize: number, path: string): SquashfsSummary {
  if (sb.length < SUPERBLOCK_BYTES) throw refuse(path, `it is ${sb.length} bytes, shorter than a superblock`);
  if (sb.readUInt32LE(0) !== MAGIC) throw refuse(path, 'it does not start with the squashfs magic "hsqs"');
  const major = sb.readUInt16LE(28);
  const minor = sb.readUInt16LE(30);
  if (major !== 4 || minor !== 0) throw refuse(path, `it is squashfs ${major}.${minor}, and Linux mounts only 4.0`);
  const blockSize = sb.readUInt32LE(12);
  const blockLog = sb.readUInt16LE(22);
  if (blockSize < MIN_BLOCK || blockSize > MAX_BLOCK || 2 ** blockLog !== blockSize) {
    throw refuse(path, `its block size ${blockSize} (log ${blockLog}) is not a power of two from 4 KiB to 1 MiB`);
  }
  const compression = sb.readUInt16LE(20);
  if (compression < 1 || compression > 6) throw refuse(path, `its compression id ${compression} is unknown`);
  const inodes = sb.readUInt32LE(4);
  if (inodes === 0) throw refuse(path, 'it has no inodes');
  const bytesUsed = Number(sb.readBigUInt64LE(40));
  if (bytesUsed < SUPERBLOCK_BYTES || bytesUsed > fileSize) {
    throw refuse(path, `its superblock says ${bytesUsed} bytes are used but the file has ${fileSize}`);
  }
  const inodeTable = Number(sb.readBigUInt64LE(64));
  const directoryTable = Number(sb.readBigUInt64LE(72));
  const idTable = Number(sb.readBigUInt64LE(48));
  if (!(inodeTable >= SUPERBLOCK_BYTES && inodeTable < directoryTable && directoryTable < bytesUsed)) {
    throw refuse(path, 'its inode and directory tables lie outside the image');
  }
  if (idTable >= bytesUsed) throw refuse(path, 'its id table lies outside the image');
  return { inodes, blockSize, bytesUsed };
}
