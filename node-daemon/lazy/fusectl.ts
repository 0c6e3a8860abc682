/**
 * Taking down a FUSE mount whose server died or hangs, without ever touching the mount (a stat
 * on it would hang with the server): find its connection in /proc/self/mountinfo (the device
 * minor is the fusectl connection id), write 1 to `<fusectl>/<id>/abort` so every waiting and
 * future request fails at once, then detach it with umount2(MNT_DETACH) (`umount -l -c`: lazy, no
 * path canonicalisation, so no stat of the mount point).
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ShifterError, describeError } from '../../common/errors.js';

const run = promisify(execFile);
export const FUSECTL_DIR = '/sys/fs/fuse/connections';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  minor: number;
  major: number;
}

/** mountinfo escapes space, tab, newline and backslash as octal. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (fields.length < 10 || dash < 6) continue;
    const [major, minor] = fields[2].split(':').map(Number);
    out.push({ mountpoint: unescape(fields[4]), fstype: fields[dash + 1], major, minor });
  }
  return out;
}

export async function mountsAt(mountpoint: string): Promise<MountEntry[]> {
  const entries = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  return entries.filter((e) => e.mountpoint === mountpoint);
}

async function ensureFusectl(): Promise<void> {
  const entries = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
  if (entries.some((e) => e.fstype === 'fusectl' && e.mountpoint === FUSECTL_DIR)) return;
  try {
    await run('mount', ['-t', 'fusectl', 'none', FUSECTL_DIR]);
  } catch (e) {
    throw new ShifterError('IO_ERROR', `cannot mount fusectl on ${FUSECTL_DIR}: ${describeError(e)}`, e);
  }
}

/** Aborts the FUSE connections mounted at `mountpoint` and detaches every mount there. */
export async function abortAndDetach(mountpoint: string): Promise<void> {
  const mounts = await mountsAt(mountpoint);
  const fuse = mounts.filter((m) => m.fstype.startsWith('fuse'));
  if (fuse.length > 0) await ensureFusectl();
  for (const m of fuse) {
    await writeFile(join(FUSECTL_DIR, String(m.minor), 'abort'), '1').catch((e: unknown) => {
      // ENOENT: the connection ended on its own when the server's /dev/fuse closed.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    });
  }
  for (let i = 0; i < mounts.length; i++) {
    try {
      await run('umount', ['-l', '-c', mountpoint]);
    } catch (e) {
      throw new ShifterError('IO_ERROR', `cannot detach the lazy image mount ${mountpoint}: ${describeError(e)}`, e);
    }
  }
}
