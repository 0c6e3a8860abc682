/**
 * The pull manager: decides whether a pull request starts a pull, runs pulls on at most
 * `WorkerThreads` workers (the rest wait in a FIFO queue), writes every status change to the
 * store, and at startup repairs what a crash or kill left behind:
 * - READY records whose `<id>.squashfs`/`<id>.meta` are missing become FAILURE (re-pullable at once);
 * - in-flight records are re-queued (they restart from the manifest; downloaded blobs are reused
 *   from the cache), except pulls that used the caller's registry credentials, which are never
 *   stored: those become FAILURE with a message asking to pull again, and pulls the gateway
 *   already stopped under twice while converting (an image that crashes it would otherwise crash
 *   it at every start): those become FAILURE saying so;
 * - temporary files in every imageDir and pull scratch dirs in ExpandDirectory are deleted, and so
 *   are the blob cache's (its partial downloads are kept: the resumed pull continues them).
 * SIGTERM (stop) aborts running pulls without touching their records, so the next start resumes them.
 * A pull that runs longer than PullDeadline fails; at most RegistryConcurrency pulls run against one
 * registry, so a registry that stalls cannot take every worker.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isTemporaryName } from '../../common/atomic-write.js';
import { describeError, isShifterError, ShifterError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { credentialsFor, type Session } from '../auth/session.js';
import type { GatewayConfig } from '../config/imagemanager.js';
import type { GatewayMetrics } from '../metrics/gateway-metrics.js';
import { parseImageReference } from '../reference/image-ref.js';
import type { ImageStore } from '../store/image-store.js';
import type { ImageRecord, PullProgress, RecordKey } from '../store/record.js';
import { BlobCache } from '../registry/index.js';
import { runPullPipeline, type PullRequest } from './pipeline.js';
import { imageFilesComplete } from '../transfer/local.js';
import { registryAccess, registryKey } from './registry-access.js';
import { decidePull, failureWindowSec, progressMessage } from './rules.js';
import { assertMove, IN_FLIGHT, type ImageStatus } from '../store/status.js';

const WORKDIR_PREFIX = 'gw-pull-';
const HEARTBEAT_MS = 30_000;
const PROGRESS_WRITE_MS = 500;
/** A pull the gateway stopped under this many times while converting is not resumed again. */
export const MAX_CONVERSION_ATTEMPTS = 2;

interface Job {
  key: RecordKey;
  req: PullRequest;
  /** registryKey of the image's registry. */
  registry: string;
  tokens: Record<string, string>;
  abort: AbortController;
  /** Date.now() when it was queued (metrics: time spent waiting). */
  queuedAt: number;
  /** Conversions started earlier for this record that the gateway stopped under. */
  conversionAttempts: number;
  done?: Promise<void>;
}

class ShutdownSignal extends Error {}

/** A record written by another gateway (upstream's MongoDB) may hold a tag this one cannot parse. */
function parsesAsReference(tag: string, defaultLocation: string): boolean {
  try {
    parseImageReference(tag, defaultLocation);
    return true;
  } catch {
    return false;
  }
}

export class PullManager {
  private readonly queue: Job[] = [];
  private readonly running = new Map<RecordKey, Job>();
  private readonly imageLocks = new Map<string, Promise<unknown>>();
  private readonly tagLocks = new Map<string, Promise<unknown>>();
  private stopping = false;
  private readonly cache: BlobCache;

  constructor(
    private readonly store: ImageStore,
    private readonly config: GatewayConfig,
    private readonly log: Logger,
    private readonly metrics?: GatewayMetrics,
  ) {
    this.cache = new BlobCache(config.cacheDirectory);
    metrics?.watchQueue(() => ({ queued: this.queue.length, running: this.running.size }));
  }

  private now(): number {
    return Date.now() / 1000;
  }

  /** Upstream `update_states`: FAILURE records older than PullUpdateTimeout disappear. */
  async expireFailures(): Promise<void> {
    await this.store.deleteFailuresBefore(this.now() - failureWindowSec(this.config));
  }

  /** Runs `fn` with no other `fn` for the same key running (promise chain per key). */
  private async serialized<T>(locks: Map<string, Promise<unknown>>, key: string, fn: () => Promise<T>): Promise<T> {
    const prev = locks.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    locks.set(key, next);
    try {
      return await next;
    } finally {
      if (locks.get(key) === next) locks.delete(key);
    }
  }

  /** Runs `fn` while no pull writes the files of image `id` on `system` (expiry and import take it too). */
  withImageLock<T>(system: string, id: string, fn: () => Promise<T>): Promise<T> {
    return this.serialized(this.imageLocks, `${system}\0${id}`, fn);
  }

  /** Whether this process is pulling (or about to pull) record `key`. */
  isActive(key: RecordKey): boolean {
    return this.running.has(key) || this.queue.some((j) => j.key === key);
  }

  /** Handles POST /api/pull: returns the record to show, starting a pull when the rules say so. */
  async pull(req: PullRequest, session: Session): Promise<ImageRecord> {
    if (this.stopping) throw new ShifterError('UNREACHABLE', 'the gateway is shutting down; retry in a moment');
    if (req.itype !== 'docker') {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `images of type "${req.itype}" cannot be pulled; use type docker (custom images come from doimport)`,
      );
    }
    registryAccess(req.ref.location, this.config);
    const credentialed = credentialsFor(session.tokens, req.ref.location) !== null;
    return this.serialized(this.tagLocks, `${req.system}\0${req.itype}\0${req.tag}`, async () => {
      await this.expireFailures();
      const pending = await this.store.findPullByTag(req.system, req.itype, req.tag);
      const ready = await this.store.findReadyByTag(req.system, req.itype, req.tag);
      const decision = decidePull(
        { pending, ready, userACL: req.userACL, groupACL: req.groupACL, now: this.now() },
        this.config,
      );
      if (decision.action === 'return') return decision.record;
      const rec = await this.store.createPull({
        system: req.system,
        itype: req.itype,
        pulltag: req.tag,
        requesterUid: req.requesterUid,
        userACL: req.userACL,
        groupACL: req.groupACL,
        format: this.config.defaultImageFormat,
        credentialed,
        now: this.now(),
      });
      this.log.info({ key: rec.key, tag: req.tag, system: req.system }, 'pull queued');
      const registry = registryKey(req.ref.location);
      this.enqueue({
        key: rec.key,
        req,
        registry,
        tokens: session.tokens,
        abort: new AbortController(),
        queuedAt: Date.now(),
        conversionAttempts: 0,
      });
      return rec;
    });
  }

  private enqueue(job: Job): void {
    this.queue.push(job);
    this.pump();
  }

  private pump(): void {
    while (!this.stopping && this.running.size < this.config.workerThreads) {
      const busy = (registry: string) => [...this.running.values()].filter((j) => j.registry === registry).length;
      const next = this.queue.findIndex((j) => busy(j.registry) < this.config.pullPolicy.registryConcurrency);
      if (next === -1) return;
      const job = this.queue.splice(next, 1)[0];
      this.running.set(job.key, job);
      job.done = this.run(job).finally(() => {
        this.running.delete(job.key);
        this.pump();
      });
    }
  }

  private async run(job: Job): Promise<void> {
    const { key, req } = job;
    const log = this.log.child({ pull: key, tag: req.tag, system: req.system });
    const signal = job.abort.signal;
    const deadlineSec = this.config.pullPolicy.pullDeadlineSec;
    const deadline = AbortSignal.timeout(deadlineSec * 1000);
    let status = 'PENDING' as ImageStatus;
    const timer = this.metrics?.pullTimer(job.queuedAt);
    timer?.enter('PULLING');
    let lastProgressWrite = 0;
    let pendingProgress: PullProgress | null = null;
    const write = async (patch: Parameters<ImageStore['update']>[1]) => {
      if (signal.aborted) throw new ShutdownSignal();
      await this.store.update(key, { ...patch, last_heartbeat: this.now() });
    };
    const flushProgress = async () => {
      if (!pendingProgress) return;
      const p = pendingProgress;
      pendingProgress = null;
      lastProgressWrite = Date.now();
      await write({ progress: p, status_message: progressMessage(p) });
    };
    const heartbeat = setInterval(() => {
      this.store.update(key, { last_heartbeat: this.now() }).catch(() => undefined);
    }, HEARTBEAT_MS);
    const workDir = join(this.config.expandDirectory, `${WORKDIR_PREFIX}${key}`);
    try {
      await runPullPipeline(
        req,
        {
          config: this.config,
          log,
          credentials: (location) => credentialsFor(job.tokens, location),
          withImageLock: (id, fn) => this.withImageLock(req.system, id, fn),
          readyRecord: (id) => this.store.findReadyById(req.system, id),
          signal: AbortSignal.any([signal, deadline]),
          workDir,
          cache: this.cache,
        },
        {
          status: async (next, message) => {
            await flushProgress();
            if (next !== status) assertMove(status, next);
            status = next;
            timer?.enter(next);
            const attempt = next === 'CONVERSION' ? { conversion_attempts: job.conversionAttempts + 1 } : {};
            await write({ status: next, status_message: message, ...attempt });
          },
          progress: (p) => {
            pendingProgress = p;
            if (Date.now() - lastProgressWrite >= PROGRESS_WRITE_MS || p.layersDone === p.layersTotal) {
              flushProgress().catch((e: unknown) => log.debug({ err: describeError(e) }, 'progress write skipped'));
            }
          },
          identified: (id, location) => write({ id, location }),
          downloaded: (bytes) => this.metrics?.bytesDownloaded(bytes),
          written: (bytes) => this.metrics?.bytesWritten(bytes),
          completed: async (result) => {
            if (signal.aborted) throw new ShutdownSignal();
            assertMove(status, 'READY');
            const rec = await this.store.completePull(key, result);
            timer?.end('ready');
            log.info({ id: rec.id, key: rec.key }, 'pull complete: READY');
          },
        },
      );
    } catch (e) {
      if (e instanceof ShutdownSignal || (signal.aborted && this.stopping)) {
        timer?.end(null);
        log.info('pull interrupted by shutdown; it resumes at the next start');
        if (status === 'CONVERSION') {
          await this.store
            .update(key, { conversion_attempts: job.conversionAttempts })
            .catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot give back the conversion attempt'));
        }
      } else if (isShifterError(e) && e.code === 'NOT_FOUND' && !(await this.store.get(key).catch(() => true))) {
        timer?.end(null);
        log.warn('pull record was replaced by a newer pull; dropping this one');
      } else {
        const overdue = deadline.aborted
          ? `the pull did not finish within ${deadlineSec} s (the site's PullDeadline) and was stopped ` +
            `while ${status}; try again later, or ask the site's admins if it keeps happening`
          : null;
        const message = overdue ?? (isShifterError(e) ? e.message : `internal error: ${describeError(e)}`);
        timer?.end('failure');
        if (overdue !== null) log.warn({ code: 'DEADLINE' }, `pull failed: ${message}`);
        if (isShifterError(e) && e.code === 'DISK_FULL') log.error({ code: e.code }, `pull failed: ${message}`);
        else if (isShifterError(e)) log.warn({ code: e.code }, `pull failed: ${message}`);
        else log.error({ err: e }, 'pull failed with an unexpected error');
        // A failure's age counts from when it failed (last_pull), not from when it was queued:
        // otherwise a pull slower to fail than PullUpdateTimeout is re-queued before anyone sees it.
        await this.store
          .update(key, {
            status: 'FAILURE',
            status_message: message,
            last_pull: this.now(),
            last_heartbeat: this.now(),
            progress: null,
          })
          .catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot record the pull failure'));
      }
    } finally {
      clearInterval(heartbeat);
      await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Records still waiting or being worked on in this process (for tests and shutdown). */
  get activeCount(): number {
    return this.queue.length + this.running.size;
  }

  /** Startup repair; call once before serving requests. */
  async recover(): Promise<void> {
    await mkdir(this.config.expandDirectory, { recursive: true });
    await mkdir(this.config.cacheDirectory, { recursive: true });
    for (const name of await this.cache.open()) {
      this.log.info({ file: name, cacheDirectory: this.config.cacheDirectory }, 'removed a stale blob cache file');
    }
    for (const entry of await readdir(this.config.expandDirectory)) {
      if (entry.startsWith(WORKDIR_PREFIX) || isTemporaryName(entry)) {
        await rm(join(this.config.expandDirectory, entry), { recursive: true, force: true });
      }
    }
    // Remote imageDirs are not swept or checked at start: their hosts may be down, and a leftover
    // temporary file there is named so that nothing reads it.
    const localPlatforms = Object.values(this.config.platforms).filter((p) => p.accesstype === 'local');
    for (const platform of localPlatforms) {
      await mkdir(platform.imageDir, { recursive: true });
      for (const entry of await readdir(platform.imageDir)) {
        if (isTemporaryName(entry)) {
          await rm(join(platform.imageDir, entry), { force: true });
          this.log.info(
            { file: entry, imageDir: platform.imageDir },
            'removed a partial file left by an interrupted transfer',
          );
        }
      }
    }

    for (const rec of await this.store.listByStatus(['READY'])) {
      const platform = this.config.platforms[rec.system];
      if (!platform || platform.accesstype !== 'local' || !rec.id) continue;
      if (await imageFilesComplete(platform, rec.id)) continue;
      this.log.warn({ id: rec.id, system: rec.system }, 'READY image has missing files; marking it FAILURE');
      await this.store.update(rec.key, {
        status: 'FAILURE',
        last_pull: 0,
        last_heartbeat: this.now(),
        status_message: `image files ${rec.id}.squashfs/.meta are missing from ${platform.imageDir}; pull the image again`,
      });
    }

    for (const rec of await this.store.listByStatus([...IN_FLIGHT, 'INIT'])) {
      // last_pull 0: the FAILURE expires at once and the next pull starts afresh; `now` keeps it
      // (and its reason) for PullUpdateTimeout, so the next pull shows it instead of retrying.
      const fail = (status_message: string, last_pull = 0) =>
        this.store.update(rec.key, {
          status: 'FAILURE',
          status_message,
          last_pull,
          last_heartbeat: this.now(),
          progress: null,
        });
      if (!this.config.platforms[rec.system]) {
        await fail(`the gateway restarted and system "${rec.system}" is no longer configured`);
      } else if (rec.status === 'HASHING' || rec.itype !== 'docker') {
        await fail('the gateway restarted during an import; import the image again');
      } else if (rec.credentialed) {
        await fail(
          'the gateway restarted during this pull; registry credentials are not kept on disk, so pull the image again',
        );
      } else if (!parsesAsReference(rec.pulltag, this.config.defaultImageLocation)) {
        await fail(`the gateway restarted and cannot resume "${rec.pulltag}": it is not a valid image reference`);
      } else if ((rec.conversion_attempts ?? 0) >= MAX_CONVERSION_ATTEMPTS) {
        this.log.error(
          { key: rec.key, tag: rec.pulltag, attempts: rec.conversion_attempts },
          'not resuming a pull the gateway stopped under twice while converting',
        );
        await fail(
          'the gateway stopped twice while converting this image, so it is not tried again: ' +
            'lower Limits (MaxEntries, MaxExpandedBytes) in imagemanager.json so that such images fail cleanly, ' +
            'or give the gateway more memory, or report it; then pull again',
          this.now(),
        );
      } else {
        if (rec.status !== 'PENDING') {
          await this.store.update(rec.key, {
            status: 'PENDING',
            status_message: 'Resumed after a gateway restart',
            last_heartbeat: this.now(),
            progress: null,
          });
        }
        this.log.info({ key: rec.key, tag: rec.pulltag, was: rec.status }, 'resuming an interrupted pull');
        const ref = parseImageReference(rec.pulltag, this.config.defaultImageLocation);
        this.enqueue({
          key: rec.key,
          req: {
            system: rec.system,
            itype: rec.itype,
            tag: rec.pulltag,
            ref,
            userACL: rec.userACL,
            groupACL: rec.groupACL,
            requesterUid: rec.requesterUid,
          },
          registry: registryKey(ref.location),
          tokens: {},
          abort: new AbortController(),
          queuedAt: Date.now(),
          conversionAttempts: rec.conversion_attempts ?? 0,
        });
      }
    }
  }

  /** Stops taking work; running pulls are aborted and left in flight for the next start. */
  async stop(timeoutMs = 10_000): Promise<void> {
    this.stopping = true;
    this.queue.length = 0;
    const jobs = [...this.running.values()];
    for (const job of jobs) job.abort.abort();
    await Promise.race([
      Promise.allSettled(jobs.map((j) => j.done ?? Promise.resolve())),
      new Promise((r) => setTimeout(r, timeoutMs).unref()),
    ]);
  }
}
