/**
 * prep-gpu DEST [--name gpu] [--from DIR]... : a module tree from the host's NVIDIA driver: the
 * user-space libraries nvidia-container-toolkit mounts, found through `ldconfig -p` (or --from
 * directories first), the tools, and the driver version (from libcuda's real file name,
 * libcuda.so.<version>, as the driver installs it) recorded for shifterd's pre-flight check.
 */
import { access, constants, readdir, realpath } from 'node:fs/promises';
import { basename, delimiter, join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { VERSION_LINE } from '../../common/version.js';
import { ShifterError } from '../../common/errors.js';
import { readElfFile, readLdCache, type LdCacheEntry } from '../../common/elf/library-resolver.js';
import { buildModuleTree } from '../module-tree/build-module.js';
import { runTool, validModuleName } from '../module-tree/cli.js';
import { configLines } from '../module-tree/config-lines.js';

/** The driver libraries nvidia-container-toolkit injects (compute, utility, video, graphics). */
const DRIVER_LIBRARIES = [
  'libcuda',
  'libcudadebugger',
  'libnvidia-ml',
  'libnvidia-ptxjitcompiler',
  'libnvidia-nvvm',
  'libnvidia-gpucomp',
  'libnvidia-allocator',
  'libnvidia-cfg',
  'libnvidia-opencl',
  'libnvidia-compiler',
  'libnvidia-pkcs11',
  'libnvidia-pkcs11-openssl3',
  'libnvidia-encode',
  'libnvcuvid',
  'libnvidia-opticalflow',
  'libnvidia-fbc',
  'libnvoptix',
  'libnvidia-rtcore',
  'libnvidia-tls',
  'libnvidia-glcore',
  'libnvidia-eglcore',
  'libnvidia-glsi',
  'libnvidia-glvkspirv',
  'libGLX_nvidia',
  'libEGL_nvidia',
  'libGLESv2_nvidia',
  'libGLESv1_CM_nvidia',
];

const TOOLS = [
  'nvidia-smi',
  'nvidia-debugdump',
  'nvidia-persistenced',
  'nvidia-cuda-mps-control',
  'nvidia-cuda-mps-server',
];

/** `libcuda.so.1`, `libnvidia-glcore.so.550.54.14`: a library's versioned names. */
function versionedName(base: string, name: string): boolean {
  return name.startsWith(`${base}.so.`) && /^\d+(\.\d+)*$/.test(name.slice(base.length + 4));
}

interface Candidate {
  name: string;
  path: string;
}

async function dirCandidates(dirs: readonly string[]): Promise<Candidate[]> {
  const out: Candidate[] = [];
  for (const d of dirs) {
    let entries: string[];
    try {
      entries = await readdir(d);
    } catch {
      throw new ShifterError('NOT_FOUND', `--from ${d}: no such directory`);
    }
    out.push(...entries.map((name) => ({ name, path: join(d, name) })));
  }
  return out;
}

/** Per driver library, the first found (--from, then the cache) under its shortest versioned name. */
async function driverLibraries(candidates: readonly Candidate[]): Promise<Candidate[]> {
  const chosen: Candidate[] = [];
  for (const base of DRIVER_LIBRARIES) {
    const matching = candidates.filter((c) => versionedName(base, c.name));
    if (matching.length === 0) continue;
    const first = await realpath(matching[0].path);
    const sameFile: Candidate[] = [];
    for (const c of matching) if ((await realpath(c.path).catch(() => '')) === first) sameFile.push(c);
    sameFile.sort((a, b) => a.name.length - b.name.length);
    chosen.push(sameFile[0]);
  }
  return chosen;
}

async function findTools(dirs: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const tool of TOOLS) {
    for (const d of dirs) {
      const p = join(d, tool);
      if (
        await access(p, constants.X_OK).then(
          () => true,
          () => false,
        )
      ) {
        found.push(p);
        break;
      }
    }
  }
  return found;
}

async function prepGpu(
  dest: string,
  opts: { name: string; from: string[]; toolsFrom: string[]; ldconfigCache?: string; driverVersion?: string },
): Promise<void> {
  const cache: LdCacheEntry[] = await readLdCache(opts.ldconfigCache);
  const candidates = [...(await dirCandidates(opts.from)), ...cache.map((e) => ({ name: e.name, path: e.path }))];
  const libraries = await driverLibraries(candidates);
  const cuda = libraries.find((l) => l.name.startsWith('libcuda.so.'));
  if (cuda === undefined) {
    throw new ShifterError(
      'NOT_FOUND',
      'no libcuda.so.1 in ldconfig -p' +
        (opts.from.length > 0 ? ` or ${opts.from.join(', ')}` : '') +
        ': install the NVIDIA driver, or point --from at its libraries',
    );
  }
  const cudaFile = basename(await realpath(cuda.path));
  const driverVersion = opts.driverVersion ?? /^libcuda\.so\.(\d+\.\d+(?:\.\d+)?)$/.exec(cudaFile)?.[1];
  if (driverVersion === undefined) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `cannot tell the driver version from ${cudaFile} (expected libcuda.so.<version>): give --driver-version`,
    );
  }
  const cudaElf = await readElfFile(cuda.path);
  const tools = await findTools([...opts.toolsFrom, ...(process.env.PATH ?? '').split(delimiter).filter((d) => d)]);
  const manifest = await buildModuleTree({
    kind: 'gpu',
    name: opts.name,
    dest,
    libraries,
    tools,
    search: { extraDirs: opts.from, cache },
    source: `NVIDIA driver ${driverVersion} (${cuda.path})`,
    gpu: { driverVersion },
  });
  const missing = TOOLS.filter((t) => !tools.some((p) => basename(p) === t));
  process.stderr.write(
    `prep-gpu: module ${opts.name} in ${dest}: driver ${driverVersion}, ${cudaElf.machine}, ` +
      `glibc >= ${manifest.glibcNeeded ?? 'any'}, ${libraries.length} driver libraries, tools: ` +
      `${tools.map((t) => basename(t)).join(', ') || 'none'}${missing.length > 0 ? ` (not found: ${missing.join(', ')})` : ''}` +
      '; add to udiRoot.conf:\n',
  );
  process.stdout.write(`${configLines('gpu', opts.name, dest, tools.length > 0).join('\n')}\n`);
}

function absolute(v: string): string {
  if (v === '') throw new InvalidArgumentError('is empty');
  return resolve(v);
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, absolute(v)];
}

const program = new Command('prep-gpu')
  .description("Build a shifter module tree from the host's NVIDIA driver libraries and tools.")
  .version(VERSION_LINE, '--version', 'print the version and exit')
  .argument('<dest>', 'directory to create or replace (the module tree)', absolute)
  .option('--name <name>', 'module name (module_<name>_* keys, /opt/udiImage/modules/<name>)', validModuleName, 'gpu')
  .option('--from <dir>', 'look for the driver libraries here before ldconfig -p (repeatable)', collect, [])
  .option('--tools-from <dir>', 'look for nvidia-smi and the other tools here before PATH (repeatable)', collect, [])
  .option('--ldconfig-cache <file>', 'use this ld.so cache (ldconfig -C) instead of the system one')
  .option('--driver-version <version>', "the driver version, when libcuda's file name does not carry it")
  .action(prepGpu);

process.exitCode = await runTool(program, process.argv.slice(2));
