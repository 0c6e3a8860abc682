/**
 * The admin API's holds on disk (`shifterd-holds.json` next to the admin socket, under /run: a
 * node's reboot ends its jobs and their holds together), so that a shifterd restarted during a
 * job knows what the job holds: it rebuilds the job's environment (its /var/hostsfile included)
 * and, at the job's release, still names the mount namespaces of the environments the earlier
 * shifterd built, so that the epilog can end what the job left inside them.
 *
 * Written whole to a temporary file, fsynced and renamed over the old one: a reader (a shifterd
 * starting after a crash) sees the file before or after a change, never half of it.
 */
import { randomBytes } from 'node:crypto';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ShifterError, describeError } from '../common/errors.js';
import type { ModuleChoice } from './command/options.js';

/** One hold, as PrepareEnvironment made it, with the image pinned to the id it resolved to. */
export interface HoldRecord {
  holder: string;
  uid: number;
  gid: number;
  groups: number[];
  imageId: string;
  volumes: string[];
  modules: ModuleChoice;
  /** '' unless the environment is a Slurm job's own. */
  hostsfile: string;
  /** Inodes of the mount namespaces built for this hold so far (this shifterd's and earlier ones'). */
  mountNamespaces: number[];
}

interface HoldFile {
  version: 1;
  holds: HoldRecord[];
}

const isUint = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const isStringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');

function isModuleChoice(v: unknown): v is ModuleChoice {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as { kind?: unknown; names?: unknown };
  return m.kind === 'default' || m.kind === 'none' || (m.kind === 'list' && isStringArray(m.names));
}

function isHoldRecord(v: unknown): v is HoldRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    typeof r.holder === 'string' &&
    r.holder !== '' &&
    isUint(r.uid) &&
    isUint(r.gid) &&
    Array.isArray(r.groups) &&
    r.groups.every(isUint) &&
    typeof r.imageId === 'string' &&
    /^[0-9a-f]+$/.test(r.imageId) &&
    isStringArray(r.volumes) &&
    isModuleChoice(r.modules) &&
    typeof r.hostsfile === 'string' &&
    Array.isArray(r.mountNamespaces) &&
    r.mountNamespaces.every(isUint)
  );
}

/** The holds a file's text describes, or what is wrong with it. */
export function parseHolds(text: string, path: string): HoldRecord[] | ShifterError {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    return new ShifterError(
      'BAD_CONFIG',
      `${path} is not JSON (${describeError(e)}): remove it to start without holds`,
    );
  }
  const file = data as Partial<HoldFile>;
  if (file?.version !== 1 || !Array.isArray(file.holds) || !file.holds.every(isHoldRecord)) {
    return new ShifterError('BAD_CONFIG', `${path} is not a shifterd holds file (version 1): remove it`);
  }
  return file.holds;
}

/** The holds saved at `path`: none when there is no file. */
export async function readHolds(path: string): Promise<HoldRecord[] | ShifterError> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    return new ShifterError('IO_ERROR', `cannot read ${path}: ${describeError(e)}`, e);
  }
  return parseHolds(text, path);
}

/** Replaces the file at `path` with `holds`, atomically (mode 0600: it names users and jobs). */
export async function writeHolds(path: string, holds: readonly HoldRecord[]): Promise<void> {
  const body: HoldFile = { version: 1, holds: [...holds] };
  const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const file = await open(temp, 'wx', 0o600);
    try {
      await file.writeFile(`${JSON.stringify(body)}\n`);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw new ShifterError('IO_ERROR', `cannot save the holds to ${path}: ${describeError(e)}`, e);
  }
  const dir = await open(dirname(path), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
