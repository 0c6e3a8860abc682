/**
 * Which host character devices a launch shows in its container's /dev (module_<name>_devices):
 * each module lists `/dev/<name>` entries, `*` and `?` globs allowed in the name; a literal entry
 * must be a character device on the node, a glob takes the character devices it matches and
 * skips anything else (a block device never enters a container this way). `/dev/nvidia<N>` is
 * narrowed to the GPUs the launch may use when they are known.
 *
 * Which GPUs: inside a Slurm step SLURM_STEP_GPUS, else SLURM_JOB_GPUS (slurmd sets both to
 * the indices of the device files it assigned), else CUDA_VISIBLE_DEVICES when it lists plain
 * indices (outside Slurm; inside, Slurm renumbers it from 0). All three come from the caller's
 * environment, which the caller controls: they can only narrow the set, never add a device the
 * module does not list. Keeping a job off another job's GPU against a hostile user is the job of
 * Slurm's device cgroup (ConstrainDevices=yes), which the container does not escape.
 *
 * Pure: the caller lists the device directory.
 */
import { ShifterError } from '../../common/errors.js';

export type DeviceKind = 'char' | 'block' | 'other';

export interface DeviceDirEntry {
  name: string;
  kind: DeviceKind;
}

export interface ModuleDevices {
  module: string;
  /** As configured: `/dev/<name>` with optional globs. */
  patterns: readonly string[];
}

const GPU_VARIABLES = ['SLURM_STEP_GPUS', 'SLURM_JOB_GPUS', 'CUDA_VISIBLE_DEVICES'] as const;

/** Checks one configured entry; the message names the module and says what is wrong. */
export function checkDevicePattern(module: string, pattern: string): string | undefined {
  if (!/^\/dev\/[A-Za-z0-9_.*?-]+$/.test(pattern) || pattern === '/dev/.' || pattern === '/dev/..') {
    return `module_${module}_devices: '${pattern}' is not /dev/<name> (a name directly in /dev; * and ? allowed)`;
  }
  return undefined;
}

/** The GPU indices the launch may use, or undefined when its environment says nothing usable. */
export function launchGpus(env: Readonly<Record<string, string>>): readonly number[] | undefined {
  for (const name of GPU_VARIABLES) {
    const value = env[name];
    if (value === undefined) continue;
    const items = value
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    // CUDA_VISIBLE_DEVICES may hold UUIDs (GPU-..., MIG-...): no index to narrow by.
    if (!items.every((s) => /^\d+$/.test(s))) continue;
    return [...new Set(items.map(Number))].sort((a, b) => a - b);
  }
  return undefined;
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\-]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function isGlob(pattern: string): boolean {
  return /[*?]/.test(pattern);
}

/**
 * The device names (in the device directory, and at /dev/<name> in the container) the modules
 * give this launch, sorted; throws BAD_CONFIG naming the module for a literal entry that is
 * missing or not a character device.
 */
export function selectDevices(
  modules: readonly ModuleDevices[],
  entries: readonly DeviceDirEntry[],
  gpus: readonly number[] | undefined,
): string[] {
  const kinds = new Map(entries.map((e) => [e.name, e.kind]));
  const chosen = new Set<string>();
  for (const m of modules) {
    for (const pattern of m.patterns) {
      const name = pattern.slice('/dev/'.length);
      if (!isGlob(name)) {
        const kind = kinds.get(name);
        if (kind !== 'char') {
          const why = kind === undefined ? 'does not exist on this node' : 'is not a character device';
          throw new ShifterError('BAD_CONFIG', `module ${m.module}: ${pattern} ${why}; fix module_${m.module}_devices`);
        }
        chosen.add(name);
        continue;
      }
      const re = globToRegExp(name);
      for (const e of entries) if (e.kind === 'char' && re.test(e.name)) chosen.add(e.name);
    }
  }
  return [...chosen]
    .filter((name) => {
      const gpu = /^nvidia(\d+)$/.exec(name);
      return gpu === null || gpus === undefined || gpus.includes(Number(gpu[1]));
    })
    .sort();
}

/** Whether a host /dev entry is one the modules' patterns claim (and so come only from selectDevices). */
export function claimedByModules(modules: readonly ModuleDevices[], name: string): boolean {
  return modules.some((m) => m.patterns.some((p) => globToRegExp(p.slice('/dev/'.length)).test(name)));
}
