/**
 * `manifest.json` at the top of a module tree built by tools/prep-mpi or tools/prep-gpu: what
 * the module's libraries need from an image (glibc, architecture, the MPI ABI, the GPU driver)
 * so shifterd can check an image against it before a launch (node-daemon/modules/preflight.ts),
 * and each file's sha256 so an admin can verify the tree. Parsing checks every field and names
 * the first bad one.
 */
import { ShifterError } from './errors.js';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 1;

export type ModuleKind = 'mpi' | 'gpu';

/** MPICH ABI initiative members (MPICH, Intel MPI, Cray MPICH, MVAPICH) vs Open MPI vs the rest. */
export type MpiAbiFamily = 'mpich' | 'openmpi' | 'other';

export interface MpiAbi {
  family: MpiAbiFamily;
  /** The soname programs link against, e.g. `libmpich.so.12`. */
  soname: string;
  /** The ABI version the soname carries (MPICH ABI: 12). */
  abiVersion: string;
  /** The library's own release when it says it (MPICH's `MPICH Version:`), e.g. `4.0.2`. */
  libraryVersion: string | undefined;
}

/** A file of the tree, by its path relative to the module root (e.g. `lib64/dep/libucp.so.0.0.0`). */
export type ManifestFile =
  | { path: string; type: 'file'; /** sha256 hex of the content as installed (after patchelf). */ sha256: string }
  | { path: string; type: 'symlink'; target: string };

export interface ModuleManifest {
  format: typeof MANIFEST_FORMAT;
  kind: ModuleKind;
  name: string;
  /** ELF machine of the libraries, e.g. `x86_64`. */
  architecture: string;
  /** The newest GLIBC_x.y any copied file needs (e.g. `2.34`); undefined when none needs one. */
  glibcNeeded: string | undefined;
  mpi?: MpiAbi;
  gpu?: { driverVersion: string };
  /** Where the module was built from, for people reading it. */
  source: string;
  createdAt: string;
  files: ManifestFile[];
}

function bad(label: string, what: string): never {
  throw new ShifterError('BAD_CONFIG', `${label}: ${what}; rebuild the module with tools/prep-mpi or tools/prep-gpu`);
}

function str(o: Record<string, unknown>, key: string, label: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v === '') bad(label, `'${key}' must be a non-empty string`);
  return v;
}

function optStr(o: Record<string, unknown>, key: string, label: string): string | undefined {
  return o[key] === undefined || o[key] === null ? undefined : str(o, key, label);
}

function obj(v: unknown, what: string, label: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(label, `${what} must be an object`);
  return v as Record<string, unknown>;
}

export function parseModuleManifest(text: string, label: string): ModuleManifest {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    bad(label, `not JSON (${(e as Error).message})`);
  }
  const o = obj(raw, 'the manifest', label);
  if (o.format !== MANIFEST_FORMAT) bad(label, `format ${String(o.format)} is not ${MANIFEST_FORMAT}`);
  const kind = o.kind;
  if (kind !== 'mpi' && kind !== 'gpu') bad(label, `'kind' must be "mpi" or "gpu"`);
  const glibc = optStr(o, 'glibcNeeded', label);
  if (glibc !== undefined && !/^\d+(\.\d+)+$/.test(glibc)) bad(label, `'glibcNeeded' ${glibc} is not a version x.y`);
  const manifest: ModuleManifest = {
    format: MANIFEST_FORMAT,
    kind,
    name: str(o, 'name', label),
    architecture: str(o, 'architecture', label),
    glibcNeeded: glibc,
    source: str(o, 'source', label),
    createdAt: str(o, 'createdAt', label),
    files: [],
  };
  if (o.mpi !== undefined) {
    const m = obj(o.mpi, "'mpi'", label);
    const family = m.family;
    if (family !== 'mpich' && family !== 'openmpi' && family !== 'other') bad(label, `'mpi.family' is unknown`);
    manifest.mpi = {
      family,
      soname: str(m, 'soname', label),
      abiVersion: str(m, 'abiVersion', label),
      libraryVersion: optStr(m, 'libraryVersion', label),
    };
  }
  if (o.gpu !== undefined) manifest.gpu = { driverVersion: str(obj(o.gpu, "'gpu'", label), 'driverVersion', label) };
  if (kind === 'mpi' && manifest.mpi === undefined) bad(label, `an mpi module needs 'mpi'`);
  if (kind === 'gpu' && manifest.gpu === undefined) bad(label, `a gpu module needs 'gpu'`);
  if (!Array.isArray(o.files)) bad(label, `'files' must be a list`);
  for (const f of o.files as unknown[]) {
    const e = obj(f, 'a file entry', label);
    const path = str(e, 'path', label);
    if (path.startsWith('/') || path.split('/').includes('..')) bad(label, `file path ${path} leaves the module`);
    if (e.type === 'file') manifest.files.push({ path, type: 'file', sha256: str(e, 'sha256', label) });
    else if (e.type === 'symlink') manifest.files.push({ path, type: 'symlink', target: str(e, 'target', label) });
    else bad(label, `file ${path} has type ${String(e.type)}, not file or symlink`);
  }
  return manifest;
}

export function formatModuleManifest(m: ModuleManifest): string {
  return `${JSON.stringify(m, null, 2)}\n`;
}

/** The ABI an MPI soname stands for: `libmpich.so.12`/`libmpi.so.12` MPICH ABI 12, `libmpi.so.40` Open MPI. */
export function mpiAbiOfSoname(soname: string): Omit<MpiAbi, 'libraryVersion'> | undefined {
  const m = /^lib(mpich|mpi)\.so\.(\d+)$/.exec(soname);
  if (m === null) return undefined;
  const version = m[2];
  // MPICH ABI members all use 12 (libmpich.so.12 and, for Intel MPI and Cray, libmpi.so.12); Open MPI
  // uses 20 (2.x) and 40 (3.x on). Open MPI 1.10 also used libmpi.so.12: too old to still meet.
  const family: MpiAbiFamily =
    m[1] === 'mpich' || version === '12' ? 'mpich' : Number(version) >= 20 ? 'openmpi' : 'other';
  return { family, soname, abiVersion: version };
}

export function describeMpiAbi(a: Pick<MpiAbi, 'family' | 'soname' | 'abiVersion'>): string {
  const family =
    a.family === 'mpich' ? `MPICH ABI ${a.abiVersion}` : a.family === 'openmpi' ? 'Open MPI ABI' : 'unknown ABI';
  return `${a.soname} (${family})`;
}
