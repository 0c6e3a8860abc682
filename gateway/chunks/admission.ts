/**
 * Admission control for the chunk routes: at most `concurrency` answers in flight; further requests
 * wait in a queue served round-robin between clients (a node): a freed slot goes to the waiting
 * client served longest ago, so a node with 64 requests waiting takes one slot in turn with a node
 * that has one. The queue is bounded in length and in wait:
 * past either bound a request is refused with the seconds after which a retry is likely to be
 * served, never held without end. When the queue is full, a newcomer from a client holding fewer
 * places than the largest one takes that client's newest place (which is refused instead), so a
 * flood from one node cannot lock out the others either. No I/O: the caller answers the refusals.
 */

export interface AdmissionLimits {
  /** Answers in flight at once. */
  readonly concurrency: number;
  /** Requests waiting, over all clients. */
  readonly queueLength: number;
  /** How long one request may wait for a slot. */
  readonly maxWaitMs: number;
}

export type RefusalReason = 'queue_full' | 'wait_timeout';

export type Admission =
  | { readonly kind: 'admitted'; readonly release: () => void }
  | {
      readonly kind: 'refused';
      readonly reason: RefusalReason;
      readonly retryAfterSeconds: number;
      readonly why: string;
    }
  | { readonly kind: 'cancelled' };

interface Waiter {
  readonly client: string;
  readonly resolve: (a: Admission) => void;
  readonly timer: NodeJS.Timeout;
}

/** A retry sooner than this would mostly meet the same queue; later than the cap wastes a node's deadline. */
const MIN_RETRY_AFTER_S = 1;
const MAX_RETRY_AFTER_S = 30;
/** Weight of the newest answer in the running mean of answer times. */
const SERVICE_WEIGHT = 0.2;

export class ChunkAdmission {
  private running = 0;
  private waiting = 0;
  /** Waiters by client (a client is a node). */
  private readonly queues = new Map<string, Waiter[]>();
  /** Clients with answers in flight or waiting: how many in flight, and when last granted a slot. */
  private readonly clients = new Map<string, { running: number; lastServed: number }>();
  private grants = 0;
  /** Running mean of how long an admitted answer holds its slot. */
  private serviceMs = 100;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly now: () => number = Date.now,
  ) {
    if (limits.concurrency < 1 || limits.queueLength < 0 || limits.maxWaitMs < 0) {
      throw new RangeError(`admission limits out of range: ${JSON.stringify(limits)}`);
    }
  }

  /** Requests waiting for a slot. */
  get depth(): number {
    return this.waiting;
  }

  /** Answers holding a slot. */
  get inFlight(): number {
    return this.running;
  }

  /**
   * Resolves when `client`'s request may be answered (call `release` once the answer is done), is
   * refused, or `cancel` fires while it waits (the client went away).
   */
  admit(client: string, cancel?: AbortSignal): Promise<Admission> {
    if (cancel?.aborted) return Promise.resolve({ kind: 'cancelled' });
    if (this.running < this.limits.concurrency && this.waiting === 0) return Promise.resolve(this.grant(client));
    if (this.waiting >= this.limits.queueLength && !this.evictForNewcomer(client)) {
      return Promise.resolve(this.refusal('queue_full'));
    }
    return new Promise<Admission>((resolve) => {
      const onCancel = () => {
        if (this.remove(waiter)) resolve({ kind: 'cancelled' });
      };
      const timer = setTimeout(() => {
        cancel?.removeEventListener('abort', onCancel);
        if (this.remove(waiter)) resolve(this.refusal('wait_timeout'));
      }, this.limits.maxWaitMs);
      const waiter: Waiter = {
        client,
        timer,
        resolve: (a) => {
          cancel?.removeEventListener('abort', onCancel);
          resolve(a);
        },
      };
      cancel?.addEventListener('abort', onCancel, { once: true });
      const queue = this.queues.get(client);
      if (queue === undefined) this.queues.set(client, [waiter]);
      else queue.push(waiter);
      this.waiting++;
    });
  }

  private grant(client: string): Admission {
    this.running++;
    const seen = this.clients.get(client) ?? { running: 0, lastServed: -1 };
    seen.running++;
    seen.lastServed = ++this.grants;
    this.clients.set(client, seen);
    const started = this.now();
    let released = false;
    return {
      kind: 'admitted',
      release: () => {
        if (released) return;
        released = true;
        this.running--;
        seen.running--;
        this.forgetIdle(client);
        this.serviceMs += SERVICE_WEIGHT * (this.now() - started - this.serviceMs);
        this.pump();
      },
    };
  }

  /** A client with nothing in flight and nothing waiting starts afresh next time. */
  private forgetIdle(client: string): void {
    if (this.clients.get(client)?.running === 0 && !this.queues.has(client)) this.clients.delete(client);
  }

  /** Hands free slots to waiters: each to the waiting client served longest ago (never, first). */
  private pump(): void {
    while (this.running < this.limits.concurrency && this.waiting > 0) {
      let next: [string, Waiter[]] | undefined;
      let oldest = Infinity;
      for (const entry of this.queues) {
        const served = this.clients.get(entry[0])?.lastServed ?? -1;
        if (served < oldest) [next, oldest] = [entry, served];
      }
      const [client, queue] = next!;
      const waiter = queue.shift()!;
      if (queue.length === 0) this.queues.delete(client);
      this.waiting--;
      clearTimeout(waiter.timer);
      waiter.resolve(this.grant(client));
    }
  }

  /** Frees a place for `client` by refusing the newest waiter of a client holding more places. */
  private evictForNewcomer(client: string): boolean {
    const own = this.queues.get(client)?.length ?? 0;
    let largest: Waiter[] | undefined;
    for (const queue of this.queues.values()) if (queue.length > (largest?.length ?? 0)) largest = queue;
    if (largest === undefined || largest.length <= own + 1) return false;
    const evicted = largest[largest.length - 1];
    this.remove(evicted);
    clearTimeout(evicted.timer);
    evicted.resolve(this.refusal('queue_full'));
    return true;
  }

  private remove(waiter: Waiter): boolean {
    const queue = this.queues.get(waiter.client);
    const at = queue?.indexOf(waiter) ?? -1;
    if (queue === undefined || at < 0) return false;
    queue.splice(at, 1);
    if (queue.length === 0) this.queues.delete(waiter.client);
    this.waiting--;
    this.forgetIdle(waiter.client);
    return true;
  }

  private refusal(reason: RefusalReason): Admission {
    // About when the queue ahead will have drained: the client retries then, with its own jitter.
    const drainMs = ((this.waiting + 1) / this.limits.concurrency) * this.serviceMs;
    const retryAfterSeconds = Math.min(MAX_RETRY_AFTER_S, Math.max(MIN_RETRY_AFTER_S, Math.ceil(drainMs / 1000)));
    const why =
      reason === 'queue_full'
        ? `the gateway is serving ${this.running} chunk answers with ${this.waiting} waiting, its limit ` +
          `(ChunkConcurrency ${this.limits.concurrency}, ChunkQueueLength ${this.limits.queueLength})`
        : `the request waited ${Math.round(this.limits.maxWaitMs / 1000)} s for one of the gateway's ` +
          `${this.limits.concurrency} chunk answer slots (ChunkConcurrency, ChunkQueueWait)`;
    return { kind: 'refused', reason, retryAfterSeconds, why: `${why}; retry in ${retryAfterSeconds} s` };
  }
}
