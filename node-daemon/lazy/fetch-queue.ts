/**
 * The order chunk fetches go out in. A demand fetch (a process is blocked on it: a FUSE read, or
 * the superblock and tables an attach waits for) starts at once; a prefetch (a recorded profile,
 * an admin's staging) starts only while fewer than `prefetchSlots` fetches of either kind are in
 * flight, so prefetch fills an idle link and leaves it to demand reads as they come. A demand
 * read that needs a chunk whose prefetch is still queued promotes it instead of waiting behind it.
 */
export type FetchPriority = 'demand' | 'prefetch';

export interface QueuedFetch<T> {
  readonly result: Promise<T>;
  /** Starts the fetch now if it is still queued (a reader is waiting for it). */
  promote(): void;
}

export class FetchQueue {
  private inFlight = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly prefetchSlots: number) {}

  /** Fetches in flight and queued (for the debug log). */
  get load(): { inFlight: number; queued: number } {
    return { inFlight: this.inFlight, queued: this.waiting.length };
  }

  run<T>(priority: FetchPriority, work: () => Promise<T>): QueuedFetch<T> {
    let start: () => void = () => undefined;
    const started = new Promise<void>((resolve) => {
      start = resolve;
    });
    const begin = (): void => {
      const at = this.waiting.indexOf(begin);
      if (at < 0) return;
      this.waiting.splice(at, 1);
      this.inFlight++;
      start();
    };
    if (priority === 'demand' || this.inFlight < this.prefetchSlots) {
      this.inFlight++;
      start();
    } else {
      this.waiting.push(begin);
    }
    const result = started.then(async () => {
      try {
        return await work();
      } finally {
        this.inFlight--;
        this.wake();
      }
    });
    return { result, promote: begin };
  }

  private wake(): void {
    while (this.waiting.length > 0 && this.inFlight < this.prefetchSlots) this.waiting[0]();
  }
}
