/**
 * One launch, from the launcher's raw argv/env/cwd and the kernel-given identity to the reply:
 * parse and check everything that depends only on the request first (options, volumes,
 * modules, image, argv, workdir, env), and only then get or build the environment, so a typo
 * costs no namespace work.
 *
 * Exit codes of error replies: 0 for --help, 1 for anything the user can fix (bad option,
 * unknown image, permission, unreachable gateway, bad site config), 125 for failures inside
 * shifterd or the native helper (as docker uses 125 for its own failures), a failed module
 * hook's own exit code (124 when killed at moduleHookTimeout); 126/127 come from the launcher
 * when the command cannot be run.
 *
 * Module hooks: roothooks run in the helper while the environment is built (once per
 * environment); userhooks run per launch, in module order, once the environment and the
 * command's env are known, before the reply lets the launcher exec. Their output goes to this
 * log, one entry per line with the module's name.
 */
import type { Logger } from '../common/logger.js';
import { ShifterError, describeError, isShifterError } from '../common/errors.js';
import { formatImageDescriptor } from '../common/image-descriptor.js';
import type { UdiRootConfig } from '../common/config/udiroot-conf.js';
import { parseShifterCommandLine, type ModuleChoice } from './command/options.js';
import { parseVolumeTexts, volumeSignature, type VolumeSpec } from './command/volumes.js';
import { selectModules } from './command/modules.js';
import { containerArgv, containerEnv, containerWorkdir, envToList, parseEnvFile } from './command/command.js';
import type { Environment, EnvironmentSpec } from './adapters/environment-spec.js';
import { HookFailure } from './adapters/helper-failure.js';
import { listDeviceDir } from './adapters/host-devices.js';
import type { UserHookRun } from './adapters/run-userhook.js';
import { launchGpus, selectDevices, type ModuleDevices } from './command/devices.js';
import type { ImageMount, LocalRootMount, RootMount } from './adapters/image-mount.js';
import { jobHolder } from './slurm/job-holder.js';
import { EnvironmentCache, ImageMountPool, environmentKey, type Lease } from './environment-cache.js';
import { etcEntriesFor } from './etc-files.js';
import type { Caller, ImageResolver, LocalImage, ResolvedImage, SquashfsImage } from './image-resolver.js';
import { buildEnvironmentSpec, type CompiledModule, type LaunchDevices, type SiteSetup } from './spec-builder.js';
import type { LaunchRequest } from './launch-codec.js';
import { readFileAsUser } from './user-file.js';
import { probeImage } from './image-probe.js';
import { ModulePreflight, formatVerdicts, type WithImageRoot } from './modules/module-preflight.js';

export interface DaemonState {
  config: UdiRootConfig;
  site: SiteSetup;
  /** Bumped by every successful reload; part of every cache key. */
  generation: number;
  resolver: ImageResolver;
}

export interface NativeOps {
  attachImage(path: string): Promise<ImageMount>;
  attachLocal(path: string, user: Caller): Promise<LocalRootMount>;
  createEnvironment(spec: EnvironmentSpec): Promise<Environment>;
  runUserHook(run: UserHookRun): Promise<string[]>;
}

export interface PeerIdentity {
  pid: number;
  uid: number;
  gid: number;
  groups: readonly number[];
}

export type LaunchOutcome =
  | { kind: 'error'; exitCode: number; message: string }
  | { kind: 'exec'; lease: Lease<Environment>; argv: string[]; env: string[]; cwd: string; notice: string };

export interface PrepareParams {
  caller: Caller;
  image: string;
  volumes: readonly string[];
  modules: ModuleChoice;
  /** The GPU indices the launch may use (command/devices.ts launchGpus); unset: not narrowed. */
  gpus?: readonly number[];
  /** Runs after the image is resolved, before any namespace work (argv/workdir checks). */
  beforeBuild?: (image: ResolvedImage) => void;
  /**
   * A Slurm job's own environment (keyed by its holder, since its /var/hostsfile is the job's):
   * the prolog builds it; a launch inside the job uses it when it exists, else builds as usual.
   */
  job?: { kind: 'prepare'; holder: string; hostsfile: string } | { kind: 'attach'; holder: string };
}

/** A resolved image with the id its mounts and environments are keyed by. */
export type RuntimeImage = SquashfsImage | (LocalImage & { id: string });

export interface Prepared {
  lease: Lease<Environment>;
  image: RuntimeImage;
  key: string;
  modules: CompiledModule[];
  setupMs: number;
}

export function envListToMap(env: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of env) {
    const eq = entry.indexOf('=');
    if (eq <= 0) continue;
    const k = entry.slice(0, eq);
    if (!(k in out)) out[k] = entry.slice(eq + 1); // getenv() sees the first
  }
  return out;
}

/** One line, no control characters: what the launcher prints. */
function oneLine(s: string): string {
  return s
    .replace(/[\r\n\t]+/g, ' ')
    .replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?')
    .trim();
}

/**
 * A launch inside a Slurm job may use the job's environment. SLURM_JOB_ID comes from the caller,
 * but it only selects among environments built for the caller's own uid (part of the key).
 */
function jobOfLaunch(callerEnv: Record<string, string>): Pick<PrepareParams, 'job'> {
  const id = callerEnv.SLURM_JOB_ID;
  return id !== undefined && /^\d+$/.test(id) ? { job: { kind: 'attach', holder: jobHolder(id) } } : {};
}

/** The module devices of a launch, or undefined when no selected module lists any. */
function launchDevices(modules: readonly CompiledModule[], site: SiteSetup, gpus?: readonly number[]) {
  const claims: ModuleDevices[] = modules
    .filter((m) => m.config.devices.length > 0)
    .map((m) => ({ module: m.config.name, patterns: m.config.devices }));
  if (claims.length === 0) return undefined;
  const available = listDeviceDir(site.deviceRoot).map((e) => ({
    name: e.name,
    kind: e.type === 'char' || e.type === 'block' ? e.type : ('other' as const),
  }));
  return { modules: claims, names: selectDevices(claims, available, gpus) };
}

const HOOK_LINE = /^module (\S+) (roothook|userhook) (stdout|stderr): (.*)$/;

/** A launch's GPUs come from its own environment: they can only narrow what the modules list. */
function gpusOfLaunch(callerEnv: Record<string, string>): Pick<PrepareParams, 'gpus'> {
  const gpus = launchGpus(callerEnv);
  return gpus === undefined ? {} : { gpus };
}

function msSince(t0: number): number {
  return Math.round((performance.now() - t0) * 10) / 10;
}

function refuseRoot(caller: Caller): void {
  if (caller.uid === 0 || caller.gid === 0) {
    throw new ShifterError(
      'PERMISSION_DENIED',
      'shifter does not run containers as root (uid or gid 0); run it as a regular user',
    );
  }
}

export class LaunchService {
  readonly cache: EnvironmentCache<Environment>;
  readonly pool: ImageMountPool<RootMount>;
  readonly preflight = new ModulePreflight();

  constructor(
    private readonly state: () => DaemonState,
    private readonly native: NativeOps,
    private readonly log: Logger,
    cacheOptions: { max: number; idleTtlMs: number },
  ) {
    this.pool = new ImageMountPool<RootMount>();
    this.cache = new EnvironmentCache<Environment>(cacheOptions, (imageId) => this.pool.release(imageId));
  }

  /** Turns any failure into the reply the user sees; logs bugs with their stack. */
  errorOutcome(e: unknown, context: Record<string, unknown>): LaunchOutcome {
    if (e instanceof HookFailure) {
      this.log.warn({ ...context, exitCode: e.exitCode, err: e.message }, 'launch failed: a module hook failed');
      return { kind: 'error', exitCode: e.exitCode, message: `shifter: ${oneLine(e.message)}\n` };
    }
    if (isShifterError(e)) {
      const internal = e.code === 'INTERNAL' || e.code === 'IO_ERROR';
      this.log[internal ? 'error' : 'info']({ ...context, code: e.code, err: e.message }, 'launch refused');
      return { kind: 'error', exitCode: internal ? 125 : 1, message: `shifter: ${oneLine(e.message)}\n` };
    }
    this.log.error({ ...context, err: e }, 'launch failed with an unexpected error');
    return {
      kind: 'error',
      exitCode: 125,
      message: `shifter: internal error in shifterd (${oneLine(describeError(e))}); see the shifterd log\n`,
    };
  }

  /** The hooks' output lines, one log entry each, with the module and the stream. */
  private logHookOutput(lines: readonly string[], context: Record<string, unknown>): void {
    for (const line of lines) {
      const m = HOOK_LINE.exec(line);
      if (m === null) this.log.info(context, line);
      else this.log.info({ ...context, module: m[1], hook: m[2], stream: m[3] }, m[4] ?? '');
    }
  }

  async launch(req: LaunchRequest, peer: PeerIdentity): Promise<LaunchOutcome> {
    const context = { pid: peer.pid, uid: peer.uid };
    try {
      return await this.launchOrThrow(req, peer);
    } catch (e) {
      return this.errorOutcome(e, context);
    }
  }

  /**
   * Runs fn with the image's runtime id, its root mount held in the pool meanwhile. A local: tree
   * is opened as the caller on every use (that is its access check) and keyed by its path,
   * device and inode, so a directory swapped under the same path is not taken for the cached one.
   */
  private async holdImage<T>(
    image: ResolvedImage,
    caller: Caller,
    fn: (image: RuntimeImage) => Promise<T>,
  ): Promise<T> {
    if (image.kind === 'squashfs') return fn(image);
    const mount = await this.native.attachLocal(image.path, caller);
    const id = `local:${image.path}@${mount.device}:${mount.inode}`;
    let pooled = false;
    await this.pool.acquire(id, () => {
      pooled = true;
      return Promise.resolve(mount);
    });
    if (!pooled) mount.release();
    try {
      return await fn({ ...image, id });
    } finally {
      this.pool.release(id);
    }
  }

  private async attachRoot(image: RuntimeImage, caller: Caller): Promise<RootMount> {
    const t0 = performance.now();
    let mount: RootMount;
    if (image.kind === 'squashfs') {
      mount = await this.native.attachImage(image.squashfsPath);
      await this.state().resolver.attached(image);
    } else {
      mount = await this.native.attachLocal(image.path, caller);
    }
    this.log.debug({ image: image.id, ms: msSince(t0) }, 'image attached (loop device and mount)');
    return mount;
  }

  /** The image root for the module pre-flight: the image's pooled mount, held only while reading. */
  private imageRoot(image: RuntimeImage, caller: Caller): WithImageRoot {
    return async (fn) => {
      const mount = await this.pool.acquire(image.id, () => this.attachRoot(image, caller));
      try {
        return await fn(`/proc/self/fd/${mount.fd}`);
      } finally {
        this.pool.release(image.id);
      }
    };
  }

  /** Resolves the image and gets or builds the environment; shared by launches and gRPC. */
  async prepare(p: PrepareParams, state: DaemonState = this.state()): Promise<Prepared> {
    const { site, config, resolver } = state;
    refuseRoot(p.caller);
    const userVolumes: VolumeSpec[] = parseVolumeTexts(p.volumes, 'user');
    const modules = selectModules(p.modules, config.defaultModules, config.modules).map((m) =>
      site.modules.get(m.name)!,
    );
    const t0 = performance.now();
    const resolved = await resolver.resolve(p.image, p.caller);
    this.log.debug({ image: p.image, ms: msSince(t0) }, 'image resolved');
    p.beforeBuild?.(resolved);
    return this.holdImage(resolved, p.caller, (image) => this.prepareImage(p, state, image, modules, userVolumes));
  }

  private async prepareImage(
    p: PrepareParams,
    { site, config, generation }: DaemonState,
    image: RuntimeImage,
    modules: CompiledModule[],
    userVolumes: VolumeSpec[],
  ): Promise<Prepared> {
    const devices = launchDevices(modules, site, p.gpus);
    await this.preflight.require(
      image.id,
      modules.map((m) => m.config),
      this.imageRoot(image, p.caller),
    );
    const parts = {
      uid: p.caller.uid,
      gid: p.caller.gid,
      groups: p.caller.groups,
      imageId: image.id,
      volumeSignature: volumeSignature(userVolumes),
      modules: modules.map((m) => m.config.name),
      generation,
      ...(devices === undefined ? {} : { devices: devices.names }),
    };
    if (p.job?.kind === 'attach') {
      const jobKey = environmentKey({ ...parts, job: p.job.holder });
      const lease = this.cache.acquireExisting(jobKey);
      if (lease !== undefined) return { lease, image, key: jobKey, modules, setupMs: 0 };
    }
    const hostsfile = p.job?.kind === 'prepare' ? p.job.hostsfile : undefined;
    const key = environmentKey(p.job?.kind === 'prepare' ? { ...parts, job: p.job.holder } : parts);
    let setupMs = 0;
    const lease = await this.cache.acquire(key, image.id, async () => {
      const mount = await this.pool.acquire(image.id, () => this.attachRoot(image, p.caller));
      try {
        const etc = await etcEntriesFor(
          {
            populateEtcDynamically: config.populateEtcDynamically,
            etcPath: config.etcPath,
            usersToImport: config.usersToImport,
            maxGroupCount: config.maxGroupCount,
          },
          p.caller.uid,
          p.caller.gid,
          p.caller.groups,
        );
        const spec = buildEnvironmentSpec({
          site,
          image: mount,
          layout: await probeImage(mount),
          uid: p.caller.uid,
          gid: p.caller.gid,
          groups: p.caller.groups,
          etc,
          modules,
          userVolumes,
          ...(hostsfile === undefined ? {} : { hostsfile }),
          ...(devices === undefined
            ? {}
            : { devices: { ...devices, host: listDeviceDir('/dev') } satisfies LaunchDevices }),
        });
        const env = await this.native.createEnvironment(spec);
        this.logHookOutput(env.hookLog, { uid: p.caller.uid, image: image.id });
        setupMs = env.setupMs;
        this.log.info({ uid: p.caller.uid, image: image.id, key, ms: env.setupMs }, 'environment created');
        return env;
      } catch (e) {
        this.pool.release(image.id);
        throw e;
      }
    });
    return { lease, image, key, modules, setupMs };
  }

  private async launchOrThrow(req: LaunchRequest, peer: PeerIdentity): Promise<LaunchOutcome> {
    const callerEnv = envListToMap(req.env);
    const parsed = parseShifterCommandLine(req.argv.slice(1), callerEnv);
    if (parsed.kind === 'help') return { kind: 'error', exitCode: 0, message: parsed.text.replace(/\n+$/, '\n') };
    const o = parsed.options;
    if (o.image === undefined) {
      throw new ShifterError(
        'BAD_ARGUMENT',
        'no image given: use --image=NAME:TAG (or set SHIFTER_IMAGETYPE and SHIFTER_IMAGE)',
      );
    }
    // gid 0 as a supplementary group is dropped (upstream replaced it with the primary gid).
    const caller: Caller = { uid: peer.uid, gid: peer.gid, groups: [...new Set(peer.groups.filter((g) => g !== 0))] };
    // Checked before any namespace work, and the file is read with the caller's credentials.
    const envFile =
      o.envFile === undefined ? [] : parseEnvFile(await readFileAsUser(o.envFile, req.cwd, caller), o.envFile);

    // One config for the whole launch, even if a SIGHUP reload lands in the middle.
    const state = this.state();
    const { config } = state;
    if (o.check) {
      refuseRoot(caller);
      const resolved = await state.resolver.resolve(o.image, caller);
      const modules = selectModules(o.modules, config.defaultModules, config.modules);
      const verdicts = await this.holdImage(resolved, caller, (image) =>
        this.preflight.verdicts(image.id, modules, this.imageRoot(image, caller)),
      );
      const image = resolved;
      const message = formatVerdicts(formatImageDescriptor(image.descriptor), verdicts);
      return { kind: 'error', exitCode: verdicts.every((v) => v.verdict.fits) ? 0 : 1, message };
    }
    const started = process.hrtime.bigint();
    let argv: string[] = [];
    let cwd = '/';
    const prepared = await this.prepare(
      {
        caller,
        image: o.image,
        volumes: o.volumes,
        modules: o.modules,
        ...jobOfLaunch(callerEnv),
        ...gpusOfLaunch(callerEnv),
        beforeBuild: (image) => {
          const name = formatImageDescriptor(image.descriptor);
          argv = containerArgv(o.entrypoint, o.command, image.meta.run, name);
          cwd = containerWorkdir(o.workdir, req.cwd === '' ? '/' : req.cwd, image.meta.run, name);
        },
      },
      state,
    );
    const { image, modules } = prepared;
    const env = containerEnv({
      callerEnv,
      clearEnv: o.clearEnv,
      imageRequest: o.imageRequest ?? o.image,
      imageId: image.id,
      image: image.meta.run,
      envFile,
      cliEnv: o.env,
      modules: modules.map((m) => m.config),
      site: config,
    });
    const environ = envToList(env);
    try {
      await this.runUserHooks(prepared, caller, cwd, environ, config.moduleHookTimeout);
    } catch (e) {
      prepared.lease.release();
      throw e;
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const notice = o.verbose
      ? `shifter: image ${formatImageDescriptor(image.descriptor)} is ${image.id}; environment ${prepared.lease.reused ? 'reused' : `created in ${prepared.setupMs.toFixed(1)} ms`}; ready in ${ms.toFixed(1)} ms\n`
      : '';
    return { kind: 'exec', lease: prepared.lease, argv, env: environ, cwd, notice };
  }

  private async runUserHooks(
    prepared: Prepared,
    caller: Caller,
    cwd: string,
    environ: readonly string[],
    timeoutSeconds: number,
  ): Promise<void> {
    for (const m of prepared.modules) {
      if (m.config.userhook === undefined) continue;
      const lines = await this.native.runUserHook({
        env: prepared.lease.env,
        module: m.config.name,
        script: m.config.userhook,
        uid: caller.uid,
        gid: caller.gid,
        groups: caller.groups,
        cwd,
        environ,
        timeoutSeconds,
      });
      this.logHookOutput(lines, { uid: caller.uid, image: prepared.image.id });
    }
  }
}
