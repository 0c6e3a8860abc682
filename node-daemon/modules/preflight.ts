/**
 * Does a module fit an image? The verdict, from what the image has (its glibc, architecture,
 * MPI sonames), what the module's manifest says its libraries need, and the node's running
 * NVIDIA driver. Pure: every message says what does not fit and what the user can do.
 */
import { compareVersions } from '../../common/elf/glibc.js';
import { describeMpiAbi, mpiAbiOfSoname, type ModuleManifest } from '../../common/module-manifest.js';

export interface ImageFacts {
  /** The image's libc.so.6, when it has one in its library directories. */
  libc: { path: string; version: string | undefined; architecture: string } | undefined;
  /** The image's own MPI libraries (libmpi.so.N, libmpich.so.N) by soname and path. */
  mpi: ReadonlyArray<{ soname: string; path: string }>;
  /** Why a fact could not be read (a damaged libc.so.6): reported, never guessed around. */
  unreadable: readonly string[];
}

export type DriverVersion = { kind: 'loaded'; version: string; source: string } | { kind: 'none' };

export type Verdict = { fits: true; summary: string } | { fits: false; problems: string[] };

const USE_NONE = 'or run with --module=none';

function version(v: string): number[] {
  return v.split('.').map(Number);
}

export function checkModule(
  m: Pick<ModuleManifest, 'name' | 'kind' | 'architecture' | 'glibcNeeded' | 'mpi' | 'gpu'>,
  image: ImageFacts,
  driver: DriverVersion,
): Verdict {
  const problems: string[] = [...image.unreadable.map((u) => `${u}: ${USE_NONE}`)];
  const fits: string[] = [];
  const who = `the ${m.name} module`;
  if (image.libc === undefined) {
    if (image.unreadable.length === 0) {
      problems.push(
        `image has no glibc (no libc.so.6 in its library directories), but ${who}'s libraries need glibc` +
          `${m.glibcNeeded === undefined ? '' : ` ${m.glibcNeeded}`}: use an image built on a glibc distribution ${USE_NONE}`,
      );
    }
  } else {
    const { libc } = image;
    if (libc.architecture !== m.architecture) {
      problems.push(
        `image is ${libc.architecture}, ${who} is ${m.architecture}: use a ${m.architecture} image ${USE_NONE}`,
      );
    } else {
      fits.push(m.architecture);
    }
    if (m.glibcNeeded !== undefined) {
      if (libc.version === undefined) {
        problems.push(`image libc.so.6 (${libc.path}) defines no GLIBC_ versions: rebuild the image ${USE_NONE}`);
      } else if (compareVersions(version(libc.version), version(m.glibcNeeded)) < 0) {
        problems.push(
          `image glibc ${libc.version} < ${m.glibcNeeded} needed by ${who}: rebuild the image on a newer base ${USE_NONE}`,
        );
      } else {
        fits.push(`glibc ${libc.version} >= ${m.glibcNeeded}`);
      }
    }
  }
  if (m.mpi !== undefined) {
    const want = m.mpi;
    for (const lib of image.mpi) {
      const abi = mpiAbiOfSoname(lib.soname);
      if (abi === undefined) continue;
      if (abi.family !== want.family || abi.abiVersion !== want.abiVersion) {
        problems.push(
          `image MPI ${describeMpiAbi(abi)} at ${lib.path} does not match ${who}'s ${describeMpiAbi(want)}: ` +
            `rebuild the image against an MPI with the same ABI ${USE_NONE}`,
        );
      } else {
        fits.push(`image MPI ${lib.soname} has ${who}'s ABI`);
      }
    }
  }
  if (m.gpu !== undefined) {
    if (driver.kind === 'none') {
      problems.push(
        `no NVIDIA driver is loaded on this node, ${who} was built for driver ${m.gpu.driverVersion}: ` +
          `run on a GPU node ${USE_NONE}`,
      );
    } else if (driver.version !== m.gpu.driverVersion) {
      problems.push(
        `this node runs NVIDIA driver ${driver.version}, ${who} holds the libraries of driver ${m.gpu.driverVersion}: ` +
          `ask the admins to rebuild it with prep-gpu on this driver ${USE_NONE}`,
      );
    } else {
      fits.push(`driver ${driver.version}`);
    }
  }
  return problems.length > 0 ? { fits: false, problems } : { fits: true, summary: fits.join(', ') };
}
