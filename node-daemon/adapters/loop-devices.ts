/**
 * Loop devices by the file they read, and moving one onto another file: how a lazy image's loop
 * devices leave its FUSE file for the whole local copy (node-daemon/lazy/lazy-supervisor.ts).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { ShifterError } from '../../common/errors.js';
import { runHelper } from './helper-process.js';

/** The loop devices whose backing file is `file` now, as /dev/loopN (sysfs: no read of the file itself). */
export function loopDevicesReading(file: string): string[] {
  const devices: string[] = [];
  for (const name of readdirSync('/sys/block')) {
    if (!/^loop\d+$/.test(name)) continue;
    let backing: string;
    try {
      backing = readFileSync(`/sys/block/${name}/loop/backing_file`, 'utf8').trim();
    } catch {
      continue; // not bound
    }
    if (backing === file) devices.push(`/dev/${name}`);
  }
  return devices;
}

/**
 * Moves read-only loop device `device` from `from` to `to`, a file of the same size and content
 * (LOOP_CHANGE_FD, in the native helper: the switch waits for reads in flight, which may be
 * FUSE reads, and shifterd's own thread must never wait on FUSE). NOT_FOUND when the device
 * no longer reads `from`.
 */
export async function moveLoopDevice(device: string, from: string, to: string): Promise<void> {
  for (const [what, path] of [
    ['from', from],
    ['to', to],
  ] as const) {
    if (!path.startsWith('/') || /[\n\0]/.test(path))
      throw new ShifterError('BAD_ARGUMENT', `move-loop: "${what}" path must be absolute, one line: ${path}`);
  }
  if (!/^\/dev\/loop\d+$/.test(device))
    throw new ShifterError('BAD_ARGUMENT', `move-loop: not a loop device: ${device}`);
  await runHelper(`move-loop ${device}\n${from}\n${to}`, null, [], 0);
}
