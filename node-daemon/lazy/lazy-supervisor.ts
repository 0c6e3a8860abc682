/**
 * shifterd's side of lazy images: it spawns the FUSE server (fuse-server-main.ts) as its own
 * process, restarts it when it dies, and asks it to open images; the loop device and squashfs
 * mount over `<mountpoint>/<id>.squashfs` are made by the native helper as for any image file.
 * A dead or hung server's mount is aborted through fusectl and detached before a new server
 * mounts, so readers of the old one get EIO instead of hanging; stopping leaves no mount and no
 * process behind. The gateway's facts about each image are kept here (facts-cache.ts), and an image
 * the server has open is not asked for again, so a warm launch costs no request to the server.
 * When the server has kept an image whole (every chunk cached, copied into one local file), open
 * hands out that file, and the loop devices already reading the image's FUSE file are moved onto
 * it (LOOP_CHANGE_FD): warm reads then never reach FUSE, mounts and containers over them untouched.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShifterError, describeError } from '../../common/errors.js';
import type { ImageId } from '../../common/image-descriptor.js';
import type { Logger } from '../../common/logger.js';
import { loopDevicesReading, moveLoopDevice } from '../adapters/loop-devices.js';
import { abortAndDetach } from './fusectl.js';
import { imageFileName } from './fuse-server.js';
import type {
  CacheStatus,
  FuseServerConfig,
  ServerEvent,
  ServerReply,
  ServerRequest,
  StageWhat,
} from './server-protocol.js';
import { elapsed, type StageReport } from './lazy-images.js';
import type { ImageFacts } from './chunk-source.js';
import { FactsCache } from './facts-cache.js';
import { FactsFiles } from './facts-files.js';

const SERVER_MAIN = fileURLToPath(new URL('./fuse-server-main.js', import.meta.url));
const START_TIMEOUT_MS = 30_000;
const MAX_BACKOFF_MS = 30_000;

type Pending = { resolve: (r: ServerReply & { ok: true }) => void; reject: (e: ShifterError) => void };

/** Omits `req` from each member of the request union. */
type Request = ServerRequest extends infer R ? (R extends ServerRequest ? Omit<R, 'req'> : never) : never;

export interface LazySupervisorOptions {
  config: FuseServerConfig;
  log: Logger;
  /** How long an image's facts are reused before the gateway is asked again (udiRoot.conf lazyFactsTtl). */
  factsTtlMs: number;
  /** Where the server's log lines go (default: shifterd's stdout, next to its own). */
  serverLog?: NodeJS.WritableStream;
}

export class LazySupervisor {
  private child: ChildProcess | undefined;
  private ready: Promise<void> | undefined;
  private readonly pending = new Map<number, Pending>();
  private nextReq = 1;
  private stopping = false;
  private backoffMs = 1000;
  private restartTimer: NodeJS.Timeout | undefined;
  /** Images the server has open, with the file that serves each: its FUSE file, or its whole file. */
  private opened = new Map<ImageId, string>();
  /** Loop devices being moved onto an image's whole file. */
  private readonly moving = new Map<ImageId, Promise<void>>();
  private restarts = 0;
  /** Called after a server died and its mount was aborted: mounts over its files are dead. */
  onServerLost: (openedImages: readonly ImageId[]) => void = () => undefined;
  private readonly factsCache: FactsCache;

  constructor(private readonly opts: LazySupervisorOptions) {
    this.factsCache = new FactsCache({
      ttlMs: opts.factsTtlMs,
      log: opts.log,
      fetch: async (id) => (await this.ask({ op: 'facts', id }, this.opts.config.chunkTimeoutMs * 2)).facts!,
      keeper: new FactsFiles(join(opts.config.cacheDir, 'facts')),
    });
  }

  get cacheDir(): string {
    return this.opts.config.cacheDir;
  }

  get mountpoint(): string {
    return this.opts.config.mountpoint;
  }

  /** The server's pid while it runs (tests kill it). */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  get restartCount(): number {
    return this.restarts;
  }

  /** Starts the server and waits until its mount is up. */
  async start(): Promise<void> {
    await this.spawn();
  }

  private spawn(): Promise<void> {
    const ready = this.launch();
    this.ready = ready;
    ready.catch(() => undefined);
    return ready;
  }

  private async launch(): Promise<void> {
    const { config, log } = this.opts;
    // A server from an earlier shifterd (killed -9) may have left its mount behind.
    await abortAndDetach(config.mountpoint);
    const child = fork(SERVER_MAIN, [JSON.stringify(config)], {
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // The chunk store's file I/O uses the pool; FUSE requests never do (fetches are sockets).
      env: { ...process.env, UV_THREADPOOL_SIZE: '16' },
      serialization: 'json',
    });
    this.child = child;
    const out = this.opts.serverLog ?? process.stdout;
    child.stdout?.pipe(out, { end: false });
    child.stderr?.pipe(out, { end: false });
    child.on('message', (m: ServerReply | ServerEvent) => {
      if ('req' in m) this.settle(m);
      else if ('whole' in m) this.wholeChanged(m.whole, m.file);
    });
    child.once('exit', (code, signal) => this.lost(child, code, signal));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new ShifterError('IO_ERROR', `the lazy image server did not mount ${config.mountpoint} in time`));
        child.kill('SIGKILL');
      }, START_TIMEOUT_MS);
      const onMessage = (m: ServerReply | ServerEvent): void => {
        if (!('ready' in m)) return;
        clearTimeout(timer);
        child.off('message', onMessage);
        if (m.ready) resolve();
        else reject(new ShifterError(m.code, `the lazy image server did not start: ${m.message}`));
      };
      child.on('message', onMessage);
      child.once('exit', () => {
        clearTimeout(timer);
        reject(new ShifterError('IO_ERROR', 'the lazy image server exited while starting (see its log)'));
      });
    });
    this.backoffMs = 1000;
    log.info({ pid: child.pid, mountpoint: config.mountpoint }, 'lazy image server running');
  }

  private settle(m: ServerReply): void {
    const p = this.pending.get(m.req);
    if (p === undefined) return;
    this.pending.delete(m.req);
    if (m.ok) p.resolve(m);
    else p.reject(new ShifterError(m.code, m.message));
  }

  private lost(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return;
    this.child = undefined;
    for (const [, p] of this.pending) p.reject(new ShifterError('IO_ERROR', 'the lazy image server exited'));
    this.pending.clear();
    if (this.stopping) return;
    const { log } = this.opts;
    log.error({ code, signal }, 'lazy image server died; aborting its mount and restarting it');
    // Mounts over a whole file live on; only those over the dead server's files are lost.
    const opened = [...this.opened].filter(([id, file]) => file === this.fuseFile(id)).map(([id]) => id);
    this.opened = new Map();
    this.ready = abortAndDetach(this.mountpoint)
      .then(() => this.onServerLost(opened))
      .catch((e: unknown) => {
        log.error({ err: describeError(e) }, 'cannot take down the dead lazy image mount');
      })
      .then(() => this.scheduleRestart());
  }

  private scheduleRestart(): Promise<void> {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    return new Promise<void>((resolve, reject) => {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.stopping) return reject(new ShifterError('IO_ERROR', 'shifterd is stopping'));
        this.restarts++;
        this.spawn().then(resolve, (e: unknown) => {
          this.opts.log.error({ err: describeError(e) }, 'lazy image server restart failed');
          reject(e instanceof ShifterError ? e : new ShifterError('IO_ERROR', describeError(e)));
        });
      }, delay);
    });
  }

  private async ask(request: Request, timeoutMs: number): Promise<ServerReply & { ok: true }> {
    // A start or restart under way is waited for; one that failed leaves no child, answered below.
    await this.ready?.catch(() => undefined);
    const child = this.child;
    if (child === undefined || this.stopping) {
      throw new ShifterError('UNREACHABLE', 'the lazy image server is not running; shifterd restarts it, try again');
    }
    const req = this.nextReq++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req);
        reject(new ShifterError('UNREACHABLE', `the lazy image server did not answer ${request.op} in time`));
      }, timeoutMs);
      this.pending.set(req, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      child.send({ ...request, req });
    });
  }

  private get requestTimeoutMs(): number {
    // open: the index, then the superblock, then the tables, each bounded by the chunk timeout.
    return this.opts.config.chunkTimeoutMs * 4;
  }

  /** What the gateway recorded for image `id` (its index digest and `.meta` text), fetched by the server. */
  async facts(id: ImageId): Promise<ImageFacts> {
    const t0 = performance.now();
    const facts = await this.factsCache.get(id);
    this.opts.log.debug({ image: id, ms: elapsed(t0) }, 'lazy image facts');
    return facts;
  }

  private fuseFile(id: ImageId): string {
    return join(this.mountpoint, imageFileName(id));
  }

  /**
   * Opens image `id` (unless the server has it open already) and returns the path of the file to
   * attach: the image's whole local file when the node keeps it whole, else its file on the FUSE mount.
   */
  async open(id: ImageId, indexDigest?: string): Promise<string> {
    const known = this.opened.get(id);
    if (known !== undefined) {
      if (known !== this.fuseFile(id)) this.ask({ op: 'touch', id }, 10_000).catch(() => undefined);
      return known;
    }
    const t0 = performance.now();
    const r = await this.ask({ op: 'open', id, indexDigest }, this.requestTimeoutMs);
    // A whole file announced while the open was under way wins over the FUSE file.
    const file = r.wholeFile ?? this.opened.get(id) ?? this.fuseFile(id);
    this.opened.set(id, file);
    this.opts.log.debug({ image: id, file, ms: elapsed(t0) }, 'lazy image opened by the FUSE server');
    return file;
  }

  /** Fetches the image's chunks; staged whole, it is kept whole and its loop devices are on that file on return. */
  async stage(id: ImageId, what: StageWhat = 'all', timeoutMs = 3_600_000): Promise<StageReport> {
    const r = await this.ask({ op: 'stage', id, what }, timeoutMs);
    if (!this.opened.has(id)) this.opened.set(id, this.fuseFile(id));
    await this.moving.get(id);
    return r.stage!;
  }

  /**
   * A loop device was attached over `file`: if that is the image's FUSE file but the image was kept
   * whole while the attach ran (after its loop devices were moved), this one moves too.
   */
  async attached(id: ImageId, file: string): Promise<void> {
    const current = this.opened.get(id);
    if (file !== this.fuseFile(id) || current === undefined || current === file) return;
    const moved = await this.moveLoops(id, current);
    this.opts.log.info({ image: id, file: current, loopDevices: moved }, 'late attach moved to the whole image file');
  }

  /** Moves every loop device reading the image's FUSE file onto `file`; returns how many moved. */
  private async moveLoops(id: ImageId, file: string): Promise<number> {
    const from = this.fuseFile(id);
    let moved = 0;
    for (const device of loopDevicesReading(from)) {
      try {
        await moveLoopDevice(device, from, file);
        moved++;
      } catch (e) {
        this.opts.log.warn(
          { image: id, device, err: describeError(e) },
          'loop device not moved to the whole image file',
        );
      }
    }
    return moved;
  }

  /** The server kept image `id` whole in `file`, or evicted that file (undefined). */
  private wholeChanged(id: ImageId, file: string | undefined): void {
    const { log } = this.opts;
    if (file === undefined) {
      // Loop devices on the evicted file keep it until they go; new attaches read through FUSE.
      if (this.opened.has(id)) this.opened.set(id, this.fuseFile(id));
      return;
    }
    this.opened.set(id, file);
    const move = this.moveLoops(id, file).then((moved) =>
      log.info(
        { image: id, file, loopDevices: moved },
        'image kept whole on this node: its reads no longer go through FUSE',
      ),
    );
    const done = move.finally(() => {
      if (this.moving.get(id) === done) this.moving.delete(id);
    });
    this.moving.set(id, done);
  }

  async status(): Promise<CacheStatus> {
    const r = await this.ask({ op: 'status' }, 10_000);
    return r.status!;
  }

  /** Stops the server and takes its mount down (loop devices over it go with their last mount). */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.restartTimer !== undefined) clearTimeout(this.restartTimer);
    const child = this.child;
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await abortAndDetach(this.mountpoint);
  }
}
