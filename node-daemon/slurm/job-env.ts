/**
 * The job's environment on a node, from the Slurm prolog and epilog (root): the prolog asks
 * shifterd's admin API to prepare the environment the job's `shifter` ranks will attach to
 * (same uid, groups, pinned image, volumes and modules as their launches, so they find it in
 * shifterd's cache and do no namespace work) and hold it for the job, past shifterd's idle limit;
 * the epilog ends the job's hold, and kills what the job left running inside the environment.
 * When the job's image is lazy on the node, the prolog first waits, up to lazyPrologStageTimeout,
 * for what the image's starts read first (its recorded prefetch profile) to be in the node's
 * cache, so that the job's ranks do not wait for the gateway; what has not arrived by then keeps
 * arriving in the background while the job runs.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ShifterError, describeError } from '../../common/errors.js';
import { isImageId, type ImageId } from '../../common/image-descriptor.js';
import { loadShifterdProto, shifterdServiceClient } from '../admin-server.js';
import { renderHostsfile } from './hostlist.js';
import { jobHolder } from './job-holder.js';
import { killProcessesInNamespaces } from './job-processes.js';

/** What the submit-time job check exported, as the prolog sees it (SPANK_ job control variables). */
export interface JobImageRequest {
  image: string;
  volumes: string[];
  modules: string[];
  noModules: boolean;
  /** /var/hostsfile, from the node list and CPUs per node slurmd gives the prolog. */
  hostsfile: string;
}

/**
 * Reads SPANK_SHIFTER_* and the job's nodes from the prolog's environment; undefined when the job
 * asked for no image. slurmd sets SLURM_NODELIST (SLURM_JOB_NODELIST in newer releases).
 */
export function jobRequestFromEnv(env: NodeJS.ProcessEnv): JobImageRequest | undefined {
  const type = env.SPANK_SHIFTER_IMAGETYPE;
  const image = env.SPANK_SHIFTER_IMAGE;
  if (type === undefined || type === '' || image === undefined || image === '') return undefined;
  const volume = env.SPANK_SHIFTER_VOLUME ?? '';
  const module = (env.SPANK_SHIFTER_MODULE ?? '').trim();
  const nodeList = env.SLURM_JOB_NODELIST ?? env.SLURM_NODELIST;
  const cpus = env.SLURM_JOB_CPUS_PER_NODE;
  if (nodeList === undefined || cpus === undefined) {
    throw new ShifterError('BAD_ARGUMENT', 'the prolog has no SLURM_JOB_NODELIST or SLURM_JOB_CPUS_PER_NODE');
  }
  const hostsfile = renderHostsfile(nodeList, cpus);
  if (hostsfile instanceof ShifterError) throw hostsfile;
  return {
    hostsfile,
    image: `${type}:${image}`,
    volumes: volume === '' ? [] : [volume],
    modules: module === '' || module === 'none' ? [] : module.split(',').map((m) => m.trim()),
    noModules: module === 'none',
  };
}

/** shifterd's admin socket sits next to its launch socket, as shifterd places it. */
export function adminSocketPath(launchSocket: string): string {
  return join(dirname(launchSocket), 'shifterd-admin.sock');
}

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

async function call<T>(adminSocket: string, method: string, req: unknown, timeoutMs = 120_000): Promise<T> {
  const Ctor = shifterdServiceClient(loadShifterdProto());
  const client = new Ctor(`unix://${adminSocket}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, Unary>;
  try {
    return await new Promise<T>((resolve, reject) =>
      client[method](req, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res as T))),
    );
  } catch (e) {
    const code = (e as grpc.ServiceError).code;
    if (code === grpc.status.UNAVAILABLE || code === grpc.status.DEADLINE_EXCEEDED) {
      throw new ShifterError('UNREACHABLE', `shifterd is not answering on ${adminSocket}: ${describeError(e)}`, e);
    }
    throw new ShifterError(code === grpc.status.INTERNAL ? 'INTERNAL' : 'BAD_ARGUMENT', describeError(e), e);
  } finally {
    client.close();
  }
}

export async function prepareJobEnvironment(
  adminSocket: string,
  job: { jobId: string; uid: number; gid: number },
  req: JobImageRequest,
): Promise<{ key: string; imageId: string; reused: boolean }> {
  return call<{ key: string; imageId: string; reused: boolean }>(adminSocket, 'PrepareEnvironment', {
    uid: job.uid,
    gid: job.gid,
    groups: [],
    image: req.image,
    volumes: req.volumes,
    modules: req.modules,
    noModules: req.noModules,
    hold: jobHolder(job.jobId),
    hostsfile: req.hostsfile,
  });
}

/** The image id of `id:<id>`, as the submit-time check pins every job's image; else undefined. */
export function pinnedImageId(image: string): ImageId | undefined {
  const m = /^id:(.*)$/.exec(image);
  return m !== null && isImageId(m[1]) ? m[1] : undefined;
}

/**
 * Whether shifterd reads image `id` lazily, by the rule of image-resolver.ts: a lazy cache is
 * configured and imagePath (when set) has no `<id>.meta`.
 */
export function isLazyOnNode(config: { imagePath?: string; lazyImageCache?: object }, id: string): boolean {
  if (config.lazyImageCache === undefined) return false;
  const imagePath = config.imagePath ?? '';
  return imagePath === '' || !existsSync(join(imagePath, `${id}.meta`));
}

export type StageOutcome =
  | { kind: 'staged'; fetchedChunks: number; fetchedBytes: number; seconds: number; profileChunks?: number }
  /** The limit passed first: shifterd goes on fetching in the background. */
  | { kind: 'late'; limitSeconds: number }
  | { kind: 'failed'; reason: string };

/**
 * Stages image `id`'s superblock, metadata tables and recorded profile on this node, waiting at
 * most `limitSeconds`. Never throws: a slow or failing gateway must not fail the prolog.
 */
export async function stageJobImage(adminSocket: string, id: string, limitSeconds: number): Promise<StageOutcome> {
  try {
    const r = await call<{
      fetchedChunks: number;
      fetchedBytes: number;
      stageSeconds: number;
      profileRecorded: boolean;
      profileChunks: number;
    }>(adminSocket, 'StageImage', { image: `id:${id}`, what: 'STAGE_PROFILE' }, limitSeconds * 1000);
    return {
      kind: 'staged',
      fetchedChunks: r.fetchedChunks,
      fetchedBytes: r.fetchedBytes,
      seconds: r.stageSeconds,
      ...(r.profileRecorded ? { profileChunks: r.profileChunks } : {}),
    };
  } catch (e) {
    const code = ((e as ShifterError).cause as grpc.ServiceError | undefined)?.code;
    if (code === grpc.status.DEADLINE_EXCEEDED) return { kind: 'late', limitSeconds };
    return { kind: 'failed', reason: describeError(e) };
  }
}

/** The prolog's log line about staging. */
export function describeStage(id: string, s: StageOutcome): string {
  switch (s.kind) {
    case 'staged': {
      const fetched =
        `fetched ${s.fetchedChunks} chunks (${(s.fetchedBytes / 1024 / 1024).toFixed(1)} MiB) ` +
        `in ${s.seconds.toFixed(2)} s`;
      return s.profileChunks === undefined
        ? `lazy image ${id} has no recorded profile: its tables staged, ${fetched}`
        : `lazy image ${id} staged with its profile of ${s.profileChunks} chunks, ${fetched}`;
    }
    case 'late':
      return (
        `lazy image ${id} not staged within lazyPrologStageTimeout=${s.limitSeconds} s: ` +
        'the job starts and the rest arrives in the background'
      );
    case 'failed':
      return `lazy image ${id} not staged (the job starts; its reads fetch what they need): ${s.reason}`;
  }
}

export type ReleaseOutcome = { kind: 'released'; killed: number; left: number } | { kind: 'kept' } | { kind: 'none' };

/**
 * Ends the job's hold: 'none' when shifterd holds nothing for it (no image, or the prolog failed),
 * 'kept' when another job of the same user with the same image, volumes and
 * modules still holds the environment. When the environment goes, the job's processes still
 * inside it are killed, so that its mounts and loop device go too.
 */
export async function releaseJobEnvironment(
  adminSocket: string,
  job: { jobId: string; uid: number },
): Promise<ReleaseOutcome> {
  const res = await call<{ released: boolean; kept: number; mountNamespaces: number[] }>(
    adminSocket,
    'ReleaseEnvironment',
    { holder: jobHolder(job.jobId) },
  );
  if (!res.released) return { kind: 'none' };
  if (res.mountNamespaces.length === 0) return { kind: 'kept' };
  return { kind: 'released', ...(await killProcessesInNamespaces(new Set(res.mountNamespaces), job.uid)) };
}
