/**
 * prep-mpi DEST [--name mpich] [--from <lib dir | pkg-config name>]: a module tree from the
 * host's MPI (the site's MPI, tuned for its interconnect), to be injected into containers built
 * against an ABI-compatible MPI. Prints the udiRoot.conf lines that enable it.
 */
import { execFile } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Command, InvalidArgumentError } from 'commander';
import { VERSION_LINE } from '../../common/version.js';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { readElfFile, readLdCache } from '../../common/elf/library-resolver.js';
import { describeMpiAbi, mpiAbiOfSoname, type MpiAbi } from '../../common/module-manifest.js';
import { buildModuleTree } from '../module-tree/build-module.js';
import { runTool, validModuleName } from '../module-tree/cli.js';
import { configLines } from '../module-tree/config-lines.js';

const run = promisify(execFile);

/** The MPI's own libraries: libmpi*, libmpich*, libpmpi* under their soname-style names. */
const MPI_LIBRARY = /^lib(mpi|mpich|pmpi)[A-Za-z0-9_+-]*\.so\.\d+$/;

interface MpiSource {
  libDir: string;
  libraryVersion: string | undefined;
  label: string;
}

async function pkgConfig(args: string[]): Promise<string> {
  try {
    return (await run('pkg-config', args)).stdout.trim();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT')
      throw new ShifterError('NOT_FOUND', 'pkg-config is not installed: give --from <lib dir>');
    throw asShifterError(e, 'NOT_FOUND', `pkg-config ${args.join(' ')} failed`);
  }
}

async function mpiSource(from: string): Promise<MpiSource> {
  if (from.startsWith('/') || from.startsWith('.'))
    return { libDir: resolve(from), libraryVersion: undefined, label: from };
  try {
    await run('pkg-config', ['--exists', from]);
  } catch {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `--from ${from}: no such directory and pkg-config knows no package '${from}' (see pkg-config --list-all)`,
    );
  }
  const libDir = await pkgConfig(['--variable=libdir', from]);
  const version = await pkgConfig(['--modversion', from]);
  return { libDir, libraryVersion: version === '' ? undefined : version, label: `pkg-config ${from} ${version}` };
}

async function prepMpi(dest: string, opts: { name: string; from: string; ldconfigCache?: string }): Promise<void> {
  const source = await mpiSource(opts.from);
  let entries: string[];
  try {
    entries = await readdir(source.libDir);
  } catch (e) {
    throw asShifterError(e, 'NOT_FOUND', `cannot read the MPI library directory ${source.libDir}`);
  }
  const names = entries.filter((e) => MPI_LIBRARY.test(e)).sort();
  const libraries = names.map((name) => ({ name, path: join(source.libDir, name) }));
  let abi: Omit<MpiAbi, 'libraryVersion'> | undefined;
  for (const l of libraries) {
    const soname = (await readElfFile(l.path)).soname ?? l.name;
    abi = abi ?? mpiAbiOfSoname(soname);
  }
  if (abi === undefined) {
    throw new ShifterError(
      'NOT_FOUND',
      `${source.libDir} has no libmpi.so.N or libmpich.so.N: point --from at the MPI's library directory`,
    );
  }
  const manifest = await buildModuleTree({
    kind: 'mpi',
    name: opts.name,
    dest,
    libraries,
    tools: [],
    search: { extraDirs: [], cache: await readLdCache(opts.ldconfigCache) },
    source: `${source.label} (${source.libDir})`,
    mpi: { ...abi, libraryVersion: source.libraryVersion },
  });
  process.stderr.write(
    `prep-mpi: module ${opts.name} in ${dest}: ${describeMpiAbi(abi)}, ${manifest.architecture}, ` +
      `glibc >= ${manifest.glibcNeeded ?? 'any'}, ${manifest.files.length} files; add to udiRoot.conf:\n`,
  );
  process.stdout.write(`${configLines('mpi', opts.name, dest, false).join('\n')}\n`);
}

function absolute(v: string): string {
  if (v === '') throw new InvalidArgumentError('is empty');
  return resolve(v);
}

const program = new Command('prep-mpi')
  .description("Build a shifter module tree from the host's MPI libraries and print the udiRoot.conf lines for it.")
  .version(VERSION_LINE, '--version', 'print the version and exit')
  .argument('<dest>', 'directory to create or replace (the module tree)', absolute)
  .option('--name <name>', 'module name (module_<name>_* keys, /opt/udiImage/modules/<name>)', validModuleName, 'mpich')
  .option('--from <dir|pkg>', "the MPI's library directory, or its pkg-config name", 'mpich')
  .option('--ldconfig-cache <file>', 'resolve dependencies with this ld.so cache instead of the system one')
  .action(prepMpi);

process.exitCode = await runTool(program, process.argv.slice(2));
