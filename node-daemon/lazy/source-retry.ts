/**
 * How the chunk source treats a failed request (chunk-source.ts), pure: which answers are worth a
 * retry, how long to back off (exponential with full jitter, so a whole job's nodes that failed
 * together do not come back together), and which sources are set aside for a cool-down after a
 * failure so later requests go straight to the next one.
 */

/** What one request to one source came to. */
export type AttemptOutcome =
  | { readonly kind: 'ok' }
  /** The thing does not exist: final, no other source is asked. */
  | { readonly kind: 'not-found' }
  /** Worth asking again (overloaded, restarting, unreachable); `retryAfterMs` from Retry-After. */
  | { readonly kind: 'transient'; readonly why: string; readonly retryAfterMs?: number }
  /** This source will not serve it (refused, broken): the next one is asked, this one not again. */
  | { readonly kind: 'refused'; readonly why: string };

export interface RetryPolicy {
  /** First backoff ceiling; it doubles at each round up to `maxBackoffMs`. */
  readonly baseBackoffMs: number;
  readonly maxBackoffMs: number;
  /** A Retry-After longer than this is cut to it. */
  readonly maxRetryAfterMs: number;
  /** How long a source that failed is tried after the others. */
  readonly coolDownMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  baseBackoffMs: 100,
  maxBackoffMs: 5_000,
  maxRetryAfterMs: 10_000,
  coolDownMs: 10_000,
};

/** 502, 503, 504: a gateway or cache overloaded or restarting; 429 and 408: asked to come back. */
const TRANSIENT_STATUSES = new Set([408, 429, 502, 503, 504]);

/** `Retry-After` in seconds or as an HTTP date, in ms from `nowMs`; undefined when absent or unreadable. */
export function parseRetryAfter(header: string | null | undefined, nowMs: number): number | undefined {
  if (header === null || header === undefined || header.trim() === '') return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

export function outcomeOfStatus(status: number, retryAfter: string | null, nowMs: number): AttemptOutcome {
  if (status >= 200 && status < 300) return { kind: 'ok' };
  if (status === 404) return { kind: 'not-found' };
  if (TRANSIENT_STATUSES.has(status)) {
    return { kind: 'transient', why: `HTTP ${status}`, retryAfterMs: parseRetryAfter(retryAfter, nowMs) };
  }
  return { kind: 'refused', why: `HTTP ${status}` };
}

/**
 * The wait before round `round` (0 for the first retry): full jitter over the doubled ceiling, and
 * at least what a source asked for with Retry-After (capped).
 */
export function retryDelayMs(
  round: number,
  retryAfterMs: number | undefined,
  policy: RetryPolicy,
  random: () => number,
): number {
  const ceiling = Math.min(policy.maxBackoffMs, policy.baseBackoffMs * 2 ** Math.min(round, 30));
  const jitter = Math.floor(random() * ceiling);
  return Math.max(jitter, Math.min(retryAfterMs ?? 0, policy.maxRetryAfterMs));
}

/** Sources that failed lately, and until when they are tried after the others. */
export class SourceHealth {
  private readonly coolUntil = new Map<string, number>();

  constructor(
    private readonly policy: RetryPolicy,
    private readonly now: () => number = Date.now,
  ) {}

  failed(source: string, retryAfterMs?: number): void {
    const coolMs = Math.max(this.policy.coolDownMs, Math.min(retryAfterMs ?? 0, this.policy.maxRetryAfterMs));
    this.coolUntil.set(source, this.now() + coolMs);
  }

  succeeded(source: string): void {
    this.coolUntil.delete(source);
  }

  cooling(source: string): boolean {
    const until = this.coolUntil.get(source);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.coolUntil.delete(source);
    return false;
  }

  /** `sources` in their configured order, those cooling down after the others (soonest back first). */
  order(sources: readonly string[]): string[] {
    const ready = sources.filter((s) => !this.cooling(s));
    const cooling = sources
      .filter((s) => this.cooling(s))
      .sort((a, b) => this.coolUntil.get(a)! - this.coolUntil.get(b)!);
    return [...ready, ...cooling];
  }
}
