/**
 * The pre-flight before a launch: for each selected module with a manifest.json at its
 * copyPath, the image's facts against the manifest (preflight.ts). The expensive parts are read
 * once and cached: an image's facts per image id (an image never changes), a manifest per
 * file identity (inode, mtime, size: a prep-mpi rerun replaces it). The verdict itself is
 * recomputed per launch, which costs nothing and keeps the running driver current.
 */
import { stat, readFile } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { ShifterModuleConfig } from '../../common/config/udiroot-conf.js';
import { ShifterError, asShifterError } from '../../common/errors.js';
import { MANIFEST_FILE, parseModuleManifest, type ModuleManifest } from '../../common/module-manifest.js';
import { runningDriverVersion } from './driver-version.js';
import { readImageFacts } from './image-facts.js';
import { checkModule, type DriverVersion, type ImageFacts, type Verdict } from './preflight.js';

export interface ModuleVerdict {
  module: string;
  verdict: Verdict;
}

/** Runs `fn` with the image root (/proc/self/fd/N of the attached image). */
export type WithImageRoot = <T>(fn: (root: string) => Promise<T>) => Promise<T>;

export class ModulePreflight {
  private readonly facts = new LRUCache<string, Promise<ImageFacts>>({ max: 512 });
  private readonly manifests = new Map<string, { identity: string; manifest: ModuleManifest }>();

  constructor(private readonly driver: () => Promise<DriverVersion> = () => runningDriverVersion()) {}

  private async manifestOf(m: ShifterModuleConfig): Promise<ModuleManifest | undefined> {
    if (m.copyPath === undefined) return undefined;
    const path = `${m.copyPath}/${MANIFEST_FILE}`;
    let identity: string;
    try {
      const st = await stat(path);
      identity = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw asShifterError(e, 'BAD_CONFIG', `module ${m.name}: cannot read ${path}`);
    }
    const cached = this.manifests.get(path);
    if (cached?.identity === identity) return cached.manifest;
    const text = await readFile(path, 'utf8').catch((e: unknown) => {
      throw asShifterError(e, 'BAD_CONFIG', `module ${m.name}: cannot read ${path}`);
    });
    const manifest = parseModuleManifest(text, path);
    this.manifests.set(path, { identity, manifest });
    return manifest;
  }

  private imageFacts(imageId: string, withRoot: WithImageRoot): Promise<ImageFacts> {
    let facts = this.facts.get(imageId);
    if (facts === undefined) {
      facts = withRoot(readImageFacts);
      this.facts.set(imageId, facts);
      facts.catch(() => this.facts.delete(imageId));
    }
    return facts;
  }

  /** Verdicts for the modules that have a manifest, in module order; modules without one have nothing to check. */
  async verdicts(
    imageId: string,
    modules: readonly ShifterModuleConfig[],
    withRoot: WithImageRoot,
  ): Promise<ModuleVerdict[]> {
    const out: ModuleVerdict[] = [];
    for (const m of modules) {
      const manifest = await this.manifestOf(m);
      if (manifest === undefined) continue;
      const facts = await this.imageFacts(imageId, withRoot);
      const driver = manifest.gpu === undefined ? ({ kind: 'none' } as const) : await this.driver();
      out.push({ module: m.name, verdict: checkModule({ ...manifest, name: m.name }, facts, driver) });
    }
    return out;
  }

  /** Throws, before anything runs, when a module does not fit the image. */
  async require(imageId: string, modules: readonly ShifterModuleConfig[], withRoot: WithImageRoot): Promise<void> {
    const problems = (await this.verdicts(imageId, modules, withRoot)).flatMap((v) =>
      v.verdict.fits ? [] : v.verdict.problems,
    );
    if (problems.length > 0) throw new ShifterError('BAD_ARGUMENT', problems.join('; '));
  }
}

/** What `shifter --check` prints: one line per module. */
export function formatVerdicts(imageName: string, verdicts: readonly ModuleVerdict[]): string {
  if (verdicts.length === 0)
    return `shifter: no module with a manifest is selected for ${imageName}: nothing to check\n`;
  return verdicts
    .map((v) =>
      v.verdict.fits
        ? `shifter: module ${v.module} fits image ${imageName}: ${v.verdict.summary}\n`
        : `shifter: module ${v.module} does not fit image ${imageName}: ${v.verdict.problems.join('; ')}\n`,
    )
    .join('');
}
