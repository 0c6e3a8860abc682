/**
 * The gRPC admin API of proto/shifterd.proto on a root-only unix socket (mode 0600: the file
 * mode is the access control, see the proto header). Holds are saved to a file next to the
 * socket (hold-store.ts) and rebuilt by the next shifterd.
 */
import { execFile } from 'node:child_process';
import { readlinkSync } from 'node:fs';
import { chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import type { Logger } from '../common/logger.js';
import { ShifterError, describeError, isShifterError, type ErrorCode } from '../common/errors.js';
import type { ModuleChoice } from './command/options.js';
import type { DaemonState, LaunchService, Prepared } from './launch-service.js';
import { readHolds, writeHolds, type HoldRecord } from './hold-store.js';
import { prepareSocketPath } from './launch-server.js';
import type { LazySupervisor } from './lazy/lazy-supervisor.js';
import type { ImageStatus } from './lazy/lazy-images.js';

export const PROTO_PATH = fileURLToPath(new URL('../../proto/shifterd.proto', import.meta.url));

export function loadShifterdProto(): grpc.GrpcObject {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: false, longs: Number, enums: String, defaults: true });
  return grpc.loadPackageDefinition(def);
}

export function shifterdServiceClient(proto: grpc.GrpcObject): grpc.ServiceClientConstructor {
  return ((proto.shifterd as grpc.GrpcObject).v1 as grpc.GrpcObject).Shifterd as grpc.ServiceClientConstructor;
}

function grpcStatus(code: ErrorCode): grpc.status {
  switch (code) {
    case 'BAD_ARGUMENT':
      return grpc.status.INVALID_ARGUMENT;
    case 'NOT_FOUND':
      return grpc.status.NOT_FOUND;
    case 'PERMISSION_DENIED':
      return grpc.status.PERMISSION_DENIED;
    case 'UNREACHABLE':
      return grpc.status.UNAVAILABLE;
    case 'BAD_CONFIG':
      return grpc.status.FAILED_PRECONDITION;
    default:
      return grpc.status.INTERNAL;
  }
}

function toGrpcError(e: unknown, log: Logger): grpc.ServiceError {
  if (!isShifterError(e)) log.error({ err: e }, 'admin call failed with an unexpected error');
  const err = new Error(isShifterError(e) ? e.message : `internal error: ${describeError(e)}`) as grpc.ServiceError;
  err.code = isShifterError(e) ? grpcStatus(e.code) : grpc.status.INTERNAL;
  return err;
}

/** The user's groups from NSS, as `id -G` prints them (primary first). */
function nssGroups(uid: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    execFile('id', ['-G', String(uid)], { timeout: 10_000 }, (err, stdout) => {
      if (err)
        reject(new ShifterError('NOT_FOUND', `uid ${uid} is unknown to NSS on this node: pass its groups explicitly`));
      else
        resolve(
          stdout
            .trim()
            .split(/\s+/)
            .filter((s) => s !== '')
            .map(Number),
        );
    });
  });
}

interface PrepareRequest {
  uid: number;
  gid: number;
  groups: number[];
  image: string;
  volumes: string[];
  modules: string[];
  noModules: boolean;
  hold: string;
  hostsfile: string;
}

/** The inode of the mount namespace an fd of ours refers to ("mnt:[4026532301]"). */
function mountNamespaceOf(fd: number): number | undefined {
  const m = /^mnt:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
  return m === null ? undefined : Number(m[1]);
}

export const HOLDS_FILE_NAME = 'shifterd-holds.json';

/** A saved hold and the key of the environment this shifterd built for it (none: not rebuilt). */
type LiveHold = HoldRecord & { key?: string };

/** The mount namespaces the released holds named that no remaining hold names too. */
function namespacesOfReleased(released: readonly LiveHold[], remaining: readonly LiveHold[]): number[] {
  const shared = new Set(remaining.flatMap((h) => h.mountNamespaces));
  return [...new Set(released.flatMap((h) => h.mountNamespaces))].filter((ino) => !shared.has(ino));
}

export async function startAdminServer(opts: {
  socketPath: string;
  service: LaunchService;
  state: () => DaemonState;
  log: Logger;
  launchSocket?: string;
  /** Default: shifterd-holds.json next to the admin socket. */
  holdsFile?: string;
  /** The lazy image server, when udiRoot.conf sets lazyImageCache. */
  lazy?: () => LazySupervisor | undefined;
}): Promise<{ close(): Promise<void> }> {
  const { service, log } = opts;
  const started = Date.now();
  const holdsFile = opts.holdsFile ?? join(dirname(opts.socketPath), HOLDS_FILE_NAME);
  let holds: LiveHold[] = [];
  let saving = Promise.resolve();
  const save = (): Promise<void> => {
    const snapshot = holds.map(({ key: _key, ...record }) => record);
    saving = saving
      .then(() => writeHolds(holdsFile, snapshot))
      .catch((e: unknown) => log.error({ err: describeError(e) }, 'holds not saved'));
    return saving;
  };
  /** Records `prepared` as held by `holder`, with its environment's mount namespace. */
  const remember = (record: Omit<HoldRecord, 'mountNamespaces'>, prepared: Prepared, past: number[]): LiveHold => {
    const held = service.cache.heldBy(record.holder, prepared.key)[0];
    const ino = held === undefined ? undefined : mountNamespaceOf(held.env.mntNsFd);
    const mountNamespaces = [...new Set(ino === undefined ? past : [...past, ino])];
    return { ...record, mountNamespaces, key: prepared.key };
  };
  const prepareHeld = (record: Omit<HoldRecord, 'mountNamespaces'>, image: string): Promise<Prepared> =>
    service.prepare({
      caller: { uid: record.uid, gid: record.gid, groups: record.groups },
      image,
      volumes: record.volumes,
      modules: record.modules,
      ...(record.hostsfile === ''
        ? {}
        : { job: { kind: 'prepare', holder: record.holder, hostsfile: record.hostsfile } }),
    });
  // A restarted shifterd rebuilds what the jobs on this node held (in the background: the launch
  // socket is open already; admin calls wait for it).
  const restored = (async () => {
    const saved = await readHolds(holdsFile);
    if (!Array.isArray(saved)) {
      log.error({ err: saved.message }, 'holds file unreadable: starting without holds');
      return;
    }
    for (const record of saved) {
      try {
        const prepared = await prepareHeld(record, `id:${record.imageId}`);
        prepared.lease.hold(record.holder);
        prepared.lease.release();
        holds.push(remember(record, prepared, record.mountNamespaces));
        log.info({ holder: record.holder, key: prepared.key }, 'held environment rebuilt after a restart');
      } catch (e) {
        holds.push(record);
        log.warn({ holder: record.holder, err: describeError(e) }, 'held environment not rebuilt; the hold stays');
      }
    }
    if (saved.length > 0) await save();
  })();
  const server = new grpc.Server();
  const wrap =
    <Req, Res>(fn: (req: Req) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      fn(call.request).then(
        (res) => callback(null, res),
        (e: unknown) => callback(toGrpcError(e, log)),
      );
    };

  const lazyServer = (): LazySupervisor => {
    const lazy = opts.lazy?.();
    if (lazy === undefined) {
      throw new ShifterError('BAD_CONFIG', 'no lazy image cache on this node: udiRoot.conf sets no lazyImageCache');
    }
    return lazy;
  };
  const cachedImage = (i: ImageStatus) => ({
    imageId: i.id,
    imageBytes: i.imageBytes,
    cachedBytes: i.cachedBytes,
    chunks: i.chunks,
    cachedChunks: i.cachedChunks,
    hits: i.hits,
    misses: i.misses,
    whole: i.whole,
  });

  server.addService(shifterdServiceClient(loadShifterdProto()).service, {
    PrepareEnvironment: wrap(async (req: PrepareRequest) => {
      if (req.image === '') throw new ShifterError('BAD_ARGUMENT', 'image is required');
      if (req.hostsfile !== '' && req.hold === '') {
        throw new ShifterError('BAD_ARGUMENT', 'a hostsfile is for a job environment: give its holder (hold) too');
      }
      await restored;
      const groups = req.groups.length > 0 ? req.groups : await nssGroups(req.uid);
      const modules: ModuleChoice = req.noModules
        ? { kind: 'none' }
        : req.modules.length > 0
          ? { kind: 'list', names: req.modules }
          : { kind: 'default' };
      const record = {
        holder: req.hold,
        uid: req.uid,
        gid: req.gid,
        groups: [...new Set(groups.filter((g) => g !== 0))],
        volumes: req.volumes,
        modules,
        hostsfile: req.hostsfile,
      };
      const prepared = await prepareHeld({ ...record, imageId: '' }, req.image);
      if (req.hold !== '') {
        prepared.lease.hold(req.hold);
        const same = holds.filter((h) => h.holder === req.hold && h.key === prepared.key);
        holds = holds.filter((h) => !same.includes(h));
        const past = same.flatMap((h) => h.mountNamespaces);
        holds.push(remember({ ...record, imageId: prepared.image.id }, prepared, past));
        await save();
      }
      prepared.lease.release();
      return {
        key: prepared.key,
        uid: req.uid,
        imageId: prepared.image.id,
        reused: prepared.lease.reused,
        setupMs: prepared.setupMs,
      };
    }),
    ListEnvironments: wrap(async () => ({
      environments: service.cache.list().map((e) => ({
        key: e.key,
        uid: (JSON.parse(e.key) as number[])[0],
        imageId: e.imageId,
        leases: e.leases,
        idleSeconds: e.idleMs / 1000,
        holders: e.holders,
      })),
    })),
    ReleaseEnvironment: wrap(async (req: { key: string; holder: string }) => {
      await restored;
      if (req.holder === '') {
        if (req.key === '') throw new ShifterError('BAD_ARGUMENT', 'give the key or the holder to release');
        const before = holds.length;
        holds = holds.filter((h) => h.key !== req.key);
        if (holds.length !== before) await save();
        return { released: service.cache.remove(req.key), kept: 0, mountNamespaces: [] };
      }
      const key = req.key === '' ? undefined : req.key;
      // Read while shifterd still has the fds; unhold closes them (synchronously: no launch in between).
      const live = service.cache
        .heldBy(req.holder, key)
        .filter((h) => h.holders.length === 1)
        .map((h) => mountNamespaceOf(h.env.mntNsFd))
        .filter((ino): ino is number => ino !== undefined);
      const { dropped, kept } = service.cache.unhold(req.holder, key);
      const released = holds.filter((h) => h.holder === req.holder && (key === undefined || h.key === key));
      holds = holds.filter((h) => !released.includes(h));
      if (released.length > 0) await save();
      // Also the namespaces an earlier shifterd built for these holds: processes may still be in them.
      const mountNamespaces = [...new Set([...live, ...namespacesOfReleased(released, holds)])];
      return { released: dropped + kept + released.length > 0, kept, mountNamespaces };
    }),
    CacheStatus: wrap(async () => {
      const lazy = lazyServer();
      const { store, images } = await lazy.status();
      return {
        cacheDir: lazy.cacheDir,
        storeBytes: store.bytes,
        storeLimitBytes: store.limitBytes,
        storeChunks: store.chunks,
        storeWholeImages: store.wholeImages,
        images: images.map(cachedImage),
        serverRestarts: lazy.restartCount,
      };
    }),
    StageImage: wrap(async (req: { image: string; what: 'STAGE_ALL' | 'STAGE_PROFILE' }) => {
      if (req.image === '') throw new ShifterError('BAD_ARGUMENT', 'image is required');
      const lazy = lazyServer();
      const { id } = await opts.state().resolver.resolveId(req.image, { uid: 0, gid: 0, groups: [] });
      const what = req.what === 'STAGE_PROFILE' ? 'profile' : 'all';
      const report = await lazy.stage(id, what);
      log.info(
        {
          image: id,
          what,
          fetchedChunks: report.fetchedChunks,
          fetchedBytes: report.fetchedBytes,
          seconds: Number(report.seconds.toFixed(3)),
          ...(what === 'profile' ? { profileChunks: report.profileChunks ?? null } : {}),
        },
        'image staged',
      );
      return {
        ...cachedImage(report.image),
        fetchedChunks: report.fetchedChunks,
        fetchedBytes: report.fetchedBytes,
        stageSeconds: report.seconds,
        profileRecorded: report.profileChunks !== undefined,
        profileChunks: report.profileChunks ?? 0,
      };
    }),
    Status: wrap(async () => {
      const s = opts.state();
      return {
        environments: service.cache.size,
        imagesAttached: service.pool.attached,
        configGeneration: s.generation,
        uptimeSeconds: (Date.now() - started) / 1000,
        configFile: s.config.sourceFile,
        launchSocket: opts.launchSocket ?? '',
      };
    }),
  });

  await prepareSocketPath(opts.socketPath);
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${opts.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    );
  });
  // Created 0755 under shifterd's umask 022: not connectable by others (that needs w) even before this.
  await chmod(opts.socketPath, 0o600);
  log.info({ socket: opts.socketPath }, 'admin gRPC socket listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000).unref();
      }),
  };
}
