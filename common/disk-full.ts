/**
 * A full filesystem is the site's problem, never the input's: wherever a service writes (the
 * gateway's layer cache, conversion scratch, imageDir, metadata store), running out of space or
 * quota is reported as one DISK_FULL error naming the directory, instead of, say, a "corrupt
 * layer" with advice to delete a good blob. The errno may sit anywhere in the cause chain.
 */
import { ShifterError } from './errors.js';

const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

export function isDiskFull(e: unknown): boolean {
  let c = e;
  for (let depth = 0; depth < 8 && typeof c === 'object' && c !== null; depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && (FULL_CODES.has(code) || code === 'DISK_FULL')) return true;
    c = (c as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * `e` as DISK_FULL naming `dir` (and the config key that chose it) when it is a full disk; null
 * otherwise. An error already DISK_FULL is named again, so the outermost caller (who knows the key) wins.
 */
export function diskFullError(e: unknown, dir: string, key?: string): ShifterError | null {
  if (!isDiskFull(e)) return null;
  const where = key ? `${dir} (${key})` : dir;
  return new ShifterError(
    'DISK_FULL',
    `disk full in ${where}: free space there${key ? ` or point ${key} at a larger filesystem` : ''}, then try again`,
    e,
  );
}
