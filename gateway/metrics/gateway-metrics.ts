/**
 * The gateway's Prometheus metrics (prom-client), in a registry of its own so that two gateways
 * in one process (tests) never share counters. The pull manager, the pipeline and the store report
 * through the small methods below; GET /metrics (api/metrics-routes.ts) renders the registry.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { RefusalReason } from '../chunks/admission.js';
import type { ImageStatus } from '../store/status.js';

export type PullOutcome = 'ready' | 'failure';

/** The lazy cache's routes whose answers carry image bytes or what a node needs to read them. */
export type ChunkRoute = 'facts' | 'index' | 'chunk' | 'profile';

/** The pull phases timed: each is the time a pull spends in that status. */
const TIMED_PHASES = new Set<ImageStatus>(['PENDING', 'PULLING', 'CONVERSION', 'EXAMINATION', 'TRANSFER']);

/** What a running pull reads from the pull manager when /metrics is scraped. */
export interface QueueView {
  readonly queued: number;
  readonly running: number;
}

export interface PullTimer {
  enter(status: ImageStatus): void;
  end(outcome: PullOutcome | null): void;
}

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly pulls: Counter<'outcome'>;
  private readonly phases: Histogram<'phase'>;
  private readonly downloaded: Counter;
  private readonly written: Counter;
  private readonly converting: Gauge;
  private readonly storeLatency: Histogram<'operation'>;
  private readonly chunkAnswers: Counter<'route'>;
  private readonly chunkBytes: Counter;
  private readonly chunkRefusals: Counter<'reason'>;
  private chunkQueue: () => QueueView = () => ({ queued: 0, running: 0 });
  private queue: () => QueueView = () => ({ queued: 0, running: 0 });

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'shifter_gateway_' });
    this.pulls = new Counter({
      name: 'shifter_gateway_pulls_total',
      help: 'Pulls that ended, by outcome (ready: the image is on the system; failure: FAILURE)',
      labelNames: ['outcome'],
      registers,
    });
    for (const outcome of ['ready', 'failure'] as const) this.pulls.inc({ outcome }, 0);
    this.phases = new Histogram({
      name: 'shifter_gateway_pull_phase_seconds',
      help: 'Time pulls spent in each status (pending: waiting for a worker; pulling: manifest and layers)',
      labelNames: ['phase'],
      buckets: [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600],
      registers,
    });
    this.downloaded = new Counter({
      name: 'shifter_gateway_downloaded_bytes_total',
      help: 'Layer bytes downloaded from registries (cache hits not counted)',
      registers,
    });
    this.written = new Counter({
      name: 'shifter_gateway_written_bytes_total',
      help: 'Bytes written into imageDirs (images and their .meta files)',
      registers,
    });
    this.converting = new Gauge({
      name: 'shifter_gateway_conversions_in_flight',
      help: 'Pulls converting layers to squashfs now',
      registers,
    });
    const queue = () => this.queue();
    new Gauge({
      name: 'shifter_gateway_pull_queue_depth',
      help: 'Pulls waiting for a worker',
      registers,
      collect() {
        this.set(queue().queued);
      },
    });
    new Gauge({
      name: 'shifter_gateway_pulls_running',
      help: 'Pulls on a worker now',
      registers,
      collect() {
        this.set(queue().running);
      },
    });
    this.storeLatency = new Histogram({
      name: 'shifter_gateway_store_operation_seconds',
      help: 'Latency of metadata store operations (SQLite or MongoDB), by operation',
      labelNames: ['operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.chunkAnswers = new Counter({
      name: 'shifter_gateway_chunk_answers_total',
      help: 'Lazy-cache answers with a body (304s and HEADs not counted), by route: what reached the gateway',
      labelNames: ['route'],
      registers,
    });
    for (const route of ['facts', 'index', 'chunk', 'profile'] as const) this.chunkAnswers.inc({ route }, 0);
    this.chunkBytes = new Counter({
      name: 'shifter_gateway_chunk_bytes_sent_total',
      help: 'Image bytes sent by the chunk route (whole chunks and ranges of them)',
      registers,
    });
    const chunkQueue = () => this.chunkQueue();
    new Gauge({
      name: 'shifter_gateway_chunk_queue_depth',
      help: 'Index and chunk requests waiting for an answer slot (ChunkConcurrency)',
      registers,
      collect() {
        this.set(chunkQueue().queued);
      },
    });
    new Gauge({
      name: 'shifter_gateway_chunk_answers_in_flight',
      help: 'Index and chunk answers holding a slot now',
      registers,
      collect() {
        this.set(chunkQueue().running);
      },
    });
    this.chunkRefusals = new Counter({
      name: 'shifter_gateway_chunk_rejected_total',
      help:
        'Index and chunk requests answered 503 + Retry-After, by reason ' +
        '(queue_full: over ChunkQueueLength; wait_timeout: waited ChunkQueueWait)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['queue_full', 'wait_timeout'] as const) this.chunkRefusals.inc({ reason }, 0);
  }

  /** The chunk routes' admission control tells where its queue stands. */
  watchChunkQueue(view: () => QueueView): void {
    this.chunkQueue = view;
  }

  /** An index or chunk request answered 503 by admission control. */
  chunkRefused(reason: RefusalReason): void {
    this.chunkRefusals.inc({ reason });
  }

  /** The pull manager tells where its queue stands. */
  watchQueue(view: () => QueueView): void {
    this.queue = view;
  }

  /**
   * Times one pull's phases from when it was queued (`queuedAtMs`, Date.now()): `enter` ends the
   * current phase and starts the next; `end` ends the last one and counts the outcome (null: the
   * gateway stopped under the pull, which resumes at the next start and is counted then).
   */
  pullTimer(queuedAtMs: number): PullTimer {
    let phase: ImageStatus = 'PENDING';
    let since = queuedAtMs;
    let ended = false;
    const leave = () => {
      const now = Date.now();
      if (TIMED_PHASES.has(phase)) this.phases.observe({ phase: phase.toLowerCase() }, (now - since) / 1000);
      if (phase === 'CONVERSION') this.converting.dec();
      since = now;
    };
    return {
      enter: (next) => {
        if (ended || next === phase) return;
        leave();
        phase = next;
        if (phase === 'CONVERSION') this.converting.inc();
      },
      end: (outcome) => {
        if (ended) return;
        ended = true;
        leave();
        if (outcome !== null) this.pulls.inc({ outcome });
      },
    };
  }

  bytesDownloaded(n: number): void {
    this.downloaded.inc(n);
  }

  bytesWritten(n: number): void {
    this.written.inc(n);
  }

  /** One answer with a body from the lazy cache's routes; `imageBytes` for the chunk route. */
  chunkAnswer(route: ChunkRoute, imageBytes = 0): void {
    this.chunkAnswers.inc({ route });
    if (imageBytes > 0) this.chunkBytes.inc(imageBytes);
  }

  storeOperation(operation: string, seconds: number): void {
    this.storeLatency.observe({ operation }, seconds);
  }
}
