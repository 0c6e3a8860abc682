/**
 * The NVIDIA kernel driver running on this node: /sys/module/nvidia/version ("550.54.14"), else
 * /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  ...").
 */
import { readFile, stat } from 'node:fs/promises';
import type { DriverVersion } from './preflight.js';

/**
 * Tests only: shifterd reads the version from this file instead. It is shifterd's own
 * environment (set by root when starting the daemon, never by a launching user: the launch
 * protocol passes the user's environment as data), and the file must be owned by root and
 * writable by nobody else, so it cannot carry user-controlled content.
 */
export const TEST_VERSION_FILE_ENV = 'SHIFTERD_TEST_NVIDIA_VERSION_FILE';

export function parseProcDriverVersion(text: string): string | undefined {
  return /Kernel Module\s+(\d+\.\d+(?:\.\d+)?)/.exec(text)?.[1];
}

async function readTrimmed(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

export async function runningDriverVersion(env: NodeJS.ProcessEnv = process.env): Promise<DriverVersion> {
  const override = env[TEST_VERSION_FILE_ENV];
  if (override !== undefined && override !== '') {
    const st = await stat(override).catch(() => undefined);
    if (st !== undefined && st.uid === 0 && (st.mode & 0o022) === 0) {
      const v = await readTrimmed(override);
      return v === undefined || v === '' ? { kind: 'none' } : { kind: 'loaded', version: v, source: override };
    }
    return { kind: 'none' };
  }
  const sys = await readTrimmed('/sys/module/nvidia/version');
  if (sys !== undefined && sys !== '') return { kind: 'loaded', version: sys, source: '/sys/module/nvidia/version' };
  const proc = await readTrimmed('/proc/driver/nvidia/version');
  const v = proc === undefined ? undefined : parseProcDriverVersion(proc);
  return v === undefined ? { kind: 'none' } : { kind: 'loaded', version: v, source: '/proc/driver/nvidia/version' };
}
