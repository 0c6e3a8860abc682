import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { asShifterError } from '../../common/errors.js';

export type HostDevType = 'char' | 'block' | 'dir' | 'symlink' | 'socket' | 'fifo' | 'file';

export interface HostDevEntry {
  name: string;
  type: HostDevType;
  /** Symlinks: the link text. */
  linkTo?: string;
}

/** The entries directly in a device directory (the host's /dev), by type, sorted by name. */
export function listDeviceDir(dir: string): HostDevEntry[] {
  try {
    return readdirSync(dir)
      .sort()
      .flatMap((name): HostDevEntry[] => {
        const path = join(dir, name);
        let st;
        try {
          st = lstatSync(path);
        } catch {
          return []; // gone since readdir (a pty closed)
        }
        if (st.isSymbolicLink()) return [{ name, type: 'symlink', linkTo: readlinkSync(path) }];
        const type: HostDevType = st.isCharacterDevice()
          ? 'char'
          : st.isBlockDevice()
            ? 'block'
            : st.isDirectory()
              ? 'dir'
              : st.isSocket()
                ? 'socket'
                : st.isFIFO()
                  ? 'fifo'
                  : 'file';
        return [{ name, type }];
      });
  } catch (e) {
    throw asShifterError(e, 'IO_ERROR', `cannot list the device directory ${dir}`);
  }
}
