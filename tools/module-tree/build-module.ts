/**
 * Builds a module tree (lib64/ the libraries asked for, lib64/dep/ the closure of their
 * dependencies, bin/ the tools, manifest.json) in a temp dir next to DEST and swaps it into
 * place at the end, so DEST is always either the old tree or the new one and a second run
 * simply replaces the first. Every copied ELF file gets RUNPATH
 * /opt/udiImage/modules/<name>/lib64/dep (patchelf), so its dependencies come from the module
 * and not from whatever the image has under the same soname; glibc and the loader are never copied.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  chmod,
  copyFile,
  lstat,
  mkdir,
  readdir,
  readFile,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
} from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { fsyncDirectory, writeFileAtomic } from '../../common/atomic-write.js';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { glibcNeeded, newestGlibc } from '../../common/elf/glibc.js';
import {
  libraryClosure,
  readElfFile,
  type LoadedObject,
  type SearchContext,
} from '../../common/elf/library-resolver.js';
import {
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  formatModuleManifest,
  type ManifestFile,
  type ModuleManifest,
} from '../../common/module-manifest.js';
import { moduleDepDir } from './config-lines.js';

const run = promisify(execFile);

/**
 * Libraries that dlopen plugins from a directory next to themselves: the plugins go along
 * (UCX looks for its transports in `<dir of libucs>/ucx`; without them MPICH's ch4:ucx finds
 * no transport at all).
 */
const PLUGIN_DIRS: Readonly<Record<string, string>> = { 'libucs.so.0': 'ucx' };

export interface ModuleRequest {
  kind: ModuleManifest['kind'];
  name: string;
  dest: string;
  /** Libraries for lib64/, by the name programs ask for (e.g. libmpich.so.12) and where they are. */
  libraries: ReadonlyArray<{ name: string; path: string }>;
  /** Programs for bin/. */
  tools: readonly string[];
  search: SearchContext;
  source: string;
  mpi?: ModuleManifest['mpi'];
  gpu?: ModuleManifest['gpu'];
}

async function loaded(path: string): Promise<LoadedObject> {
  return { path, elf: await readElfFile(path) };
}

/** Copies `path`'s real file into `dir` under its real name and links `names` to it. */
async function install(path: string, dir: string, names: readonly string[]): Promise<string> {
  const real = await realpath(path);
  const file = join(dir, basename(real));
  await copyFile(real, file);
  await chmod(file, 0o755);
  for (const n of new Set(names)) {
    // Two names of one library (a DT_NEEDED and its soname) may have linked it already.
    if (n !== basename(real)) await symlink(basename(real), join(dir, n)).catch(ignoreExisting);
  }
  return file;
}

function ignoreExisting(e: NodeJS.ErrnoException): void {
  if (e.code !== 'EEXIST') throw e;
}

async function pluginFiles(lib: LoadedObject, name: string): Promise<string[]> {
  const sub = PLUGIN_DIRS[name];
  if (sub === undefined) return [];
  const dir = join(dirname(await realpath(lib.path)), sub);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return [];
  }
  return entries.filter((e) => /\.so\.\d+$/.test(e)).map((e) => join(dir, e));
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function listTree(root: string, dir = root): Promise<ManifestFile[]> {
  const out: ManifestFile[] = [];
  for (const e of (await readdir(dir)).sort()) {
    const p = join(dir, e);
    const st = await lstat(p);
    const rel = relative(root, p);
    if (st.isDirectory()) out.push(...(await listTree(root, p)));
    else if (st.isSymbolicLink()) out.push({ path: rel, type: 'symlink', target: await readlink(p) });
    else out.push({ path: rel, type: 'file', sha256: await sha256(p) });
  }
  return out;
}

async function setRunpath(file: string, runpath: string): Promise<void> {
  try {
    await run('patchelf', ['--set-rpath', runpath, file]);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT')
      throw new ShifterError('NOT_FOUND', 'patchelf is not installed: apt-get install patchelf');
    throw new ShifterError('IO_ERROR', `patchelf --set-rpath on ${file} failed: ${(err.stderr ?? err.message).trim()}`);
  }
}

/** DEST may be replaced only when it is a module tree (it has a manifest) or an empty directory. */
async function checkReplaceable(dest: string): Promise<boolean> {
  let entries: string[];
  try {
    entries = await readdir(dest);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw asShifterError(e, 'IO_ERROR', `cannot read ${dest}`);
  }
  if (entries.length > 0 && !entries.includes(MANIFEST_FILE)) {
    throw new ShifterError(
      'BAD_ARGUMENT',
      `${dest} exists and is not a module tree (no ${MANIFEST_FILE}): give a new or empty directory`,
    );
  }
  return true;
}

async function swapIntoPlace(tmp: string, dest: string, exists: boolean): Promise<void> {
  if (!exists) {
    await rename(tmp, dest);
  } else {
    // Two renames: a launch in between sees no DEST and fails cleanly; running containers keep
    // the tree they bound, whose files are not rewritten.
    const old = join(dirname(dest), `.old-${basename(dest)}.${randomBytes(6).toString('hex')}`);
    await rename(dest, old);
    try {
      await rename(tmp, dest);
    } catch (e) {
      await rename(old, dest);
      throw e;
    }
    await rm(old, { recursive: true, force: true });
  }
  await fsyncDirectory(dirname(dest));
}

export async function buildModuleTree(req: ModuleRequest): Promise<ModuleManifest> {
  const exists = await checkReplaceable(req.dest);
  await mkdir(dirname(req.dest), { recursive: true });
  const tmp = join(dirname(req.dest), `.tmp-${basename(req.dest)}.${randomBytes(6).toString('hex')}`);
  try {
    const lib64 = join(tmp, 'lib64');
    const dep = join(lib64, 'dep');
    const bin = join(tmp, 'bin');
    await mkdir(dep, { recursive: true, mode: 0o755 });
    const tops = await Promise.all(req.libraries.map((l) => loaded(l.path)));
    const tools = await Promise.all(req.tools.map(loaded));
    const { libraries } = await libraryClosure([...tops, ...tools], req.search);
    const plugins: LoadedObject[] = [];
    for (const [name, lib] of libraries) {
      for (const p of await pluginFiles(lib, name)) plugins.push(await loaded(p));
    }
    const pluginDeps = await libraryClosure(plugins, req.search);
    for (const [name, lib] of pluginDeps.libraries) if (!libraries.has(name)) libraries.set(name, lib);
    for (const t of tops) libraries.delete(t.elf.soname ?? basename(t.path));

    const copied: string[] = [];
    for (const [i, lib] of tops.entries()) {
      const names = [req.libraries[i].name, ...(lib.elf.soname === undefined ? [] : [lib.elf.soname])];
      copied.push(await install(lib.path, lib64, names));
    }
    for (const [name, lib] of libraries) {
      copied.push(await install(lib.path, dep, [name, ...(lib.elf.soname === undefined ? [] : [lib.elf.soname])]));
    }
    for (const p of plugins) {
      const dir = join(dep, basename(dirname(p.path)));
      await mkdir(dir, { recursive: true, mode: 0o755 });
      copied.push(await install(p.path, dir, [basename(p.path)]));
    }
    if (tools.length > 0) await mkdir(bin, { mode: 0o755 });
    for (const t of tools) copied.push(await install(t.path, bin, []));
    for (const f of copied) await setRunpath(f, moduleDepDir(req.name));

    const all = [...tops, ...libraries.values(), ...plugins, ...tools];
    const manifest: ModuleManifest = {
      format: MANIFEST_FORMAT,
      kind: req.kind,
      name: req.name,
      architecture: tops[0]?.elf.machine ?? tools[0]?.elf.machine ?? 'unknown',
      glibcNeeded: newestGlibc(
        all.map((o) => glibcNeeded(o.elf)).flatMap((v) => (v === undefined ? [] : [`GLIBC_${v}`])),
      ),
      ...(req.mpi === undefined ? {} : { mpi: req.mpi }),
      ...(req.gpu === undefined ? {} : { gpu: req.gpu }),
      source: req.source,
      createdAt: new Date().toISOString(),
      files: await listTree(tmp),
    };
    const other = all.find((o) => o.elf.machine !== manifest.architecture);
    if (other !== undefined) {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `${other.path} is ${other.elf.machine}, the module is ${manifest.architecture}: give libraries of one architecture`,
      );
    }
    await writeFileAtomic(join(tmp, MANIFEST_FILE), formatModuleManifest(manifest));
    await chmod(tmp, 0o755);
    await swapIntoPlace(tmp, req.dest, exists);
    return manifest;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}
