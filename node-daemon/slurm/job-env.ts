/**
 * The job's environment on a node, from the Slurm prolog and epilog (root): the prolog asks
 * shifterd's admin API to prepare the environment the job's `shifter` ranks will attach to
 * (same uid, groups, pinned image, volumes and modules as their launches, so they find it in
 * shifterd's cache and do no namespace work); the epilog releases it. The key shifterd returns
 * is kept per job in a root-only directory next to shifterd's socket, from prolog to epilog.
 */
import { mkdir, readFile, readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ShifterError, describeError } from '../../common/errors.js';
import { writeFileAtomic } from '../../common/atomic-write.js';
import { loadShifterdProto, shifterdServiceClient } from '../admin-server.js';

/** What the submit-time job check exported, as the prolog sees it (SPANK_ job control variables). */
export interface JobImageRequest {
  image: string;
  volumes: string[];
  modules: string[];
  noModules: boolean;
}

/** Reads SPANK_SHIFTER_* from the prolog's environment; undefined when the job asked for no image. */
export function jobRequestFromEnv(env: NodeJS.ProcessEnv): JobImageRequest | undefined {
  const type = env.SPANK_SHIFTER_IMAGETYPE;
  const image = env.SPANK_SHIFTER_IMAGE;
  if (type === undefined || type === '' || image === undefined || image === '') return undefined;
  const volume = env.SPANK_SHIFTER_VOLUME ?? '';
  const module = (env.SPANK_SHIFTER_MODULE ?? '').trim();
  return {
    image: `${type}:${image}`,
    volumes: volume === '' ? [] : [volume],
    modules: module === '' || module === 'none' ? [] : module.split(',').map((m) => m.trim()),
    noModules: module === 'none',
  };
}

export interface AdminPaths {
  adminSocket: string;
  jobsDir: string;
}

/** The admin socket and the per-job key files sit next to the launch socket, as shifterd places them. */
export function adminPaths(launchSocket: string): AdminPaths {
  const dir = dirname(launchSocket);
  return { adminSocket: join(dir, 'shifterd-admin.sock'), jobsDir: join(dir, 'jobs') };
}

type Unary = (req: unknown, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

async function call<T>(adminSocket: string, method: string, req: unknown): Promise<T> {
  const Ctor = shifterdServiceClient(loadShifterdProto());
  const client = new Ctor(`unix://${adminSocket}`, grpc.credentials.createInsecure()) as grpc.Client &
    Record<string, Unary>;
  try {
    return await new Promise<T>((resolve, reject) =>
      client[method](req, { deadline: Date.now() + 120_000 }, (err, res) => (err ? reject(err) : resolve(res as T))),
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

const keyFile = (paths: AdminPaths, jobId: string) => join(paths.jobsDir, `${jobId}.key`);

export async function prepareJobEnvironment(
  paths: AdminPaths,
  job: { jobId: string; uid: number; gid: number },
  req: JobImageRequest,
): Promise<{ key: string; imageId: string; reused: boolean }> {
  const info = await call<{ key: string; imageId: string; reused: boolean }>(paths.adminSocket, 'PrepareEnvironment', {
    uid: job.uid,
    gid: job.gid,
    groups: [],
    image: req.image,
    volumes: req.volumes,
    modules: req.modules,
    noModules: req.noModules,
  });
  await mkdir(paths.jobsDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(keyFile(paths, job.jobId), info.key, 0o600);
  return info;
}

export type ReleaseOutcome = 'released' | 'kept' | 'none';

/**
 * Releases what the prolog prepared for the job: 'none' when it prepared nothing, 'kept' when
 * another job on this node (same user, image, volumes, modules) still uses the same environment.
 */
export async function releaseJobEnvironment(paths: AdminPaths, jobId: string): Promise<ReleaseOutcome> {
  let key: string;
  try {
    key = await readFile(keyFile(paths, jobId), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 'none';
    throw e;
  }
  await rm(keyFile(paths, jobId), { force: true });
  for (const name of await readdir(paths.jobsDir)) {
    if (!name.endsWith('.key')) continue;
    const other = await readFile(join(paths.jobsDir, name), 'utf8').catch(() => undefined);
    if (other === key) return 'kept';
  }
  await call(paths.adminSocket, 'ReleaseEnvironment', { key });
  return 'released';
}
