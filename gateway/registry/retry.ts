/**
 * Retrying with exponential back-off: only TransientError (network trouble, timeouts, 5xx/429) is
 * retried. A host that did not connect or answer in time is retried once only: it has already
 * cost a full timeout, and a host that stays silent twice is not coming back soon. When the
 * attempts run out it becomes the ShifterError a user sees, naming the URL.
 */
import { ShifterError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { TransientError } from './http.js';

export interface RetryPolicy {
  attempts: number;
  backoffMs: number;
  signal?: AbortSignal;
  log: Logger;
}

const TIMEOUT_ATTEMPTS = 2;

export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** The user-facing error for a transient failure that did not go away. */
export function exhausted(e: TransientError, attempts: number): ShifterError {
  if (e.status !== undefined) {
    return new ShifterError(
      'REGISTRY_ERROR',
      `${e.url} kept failing with HTTP ${e.status} (${attempts} attempts); the registry is having trouble, try again later`,
      e,
    );
  }
  return new ShifterError(
    'UNREACHABLE',
    `cannot reach ${e.url}: ${e.message} (${attempts} attempts); check the registry URL, the network and http_proxy/https_proxy/no_proxy`,
    e,
  );
}

/** Runs `fn` until it succeeds, fails permanently, or the attempts are used up. */
export async function withRetries<T>(
  what: string,
  policy: RetryPolicy,
  fn: (attempt: number) => Promise<T>,
): Promise<T> {
  let timeouts = 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (policy.signal?.aborted) throw policy.signal.reason;
      if (!(e instanceof TransientError)) throw e;
      if (e.timedOut) timeouts++;
      if (attempt >= policy.attempts || timeouts >= TIMEOUT_ATTEMPTS) throw exhausted(e, attempt);
      const wait = policy.backoffMs * 2 ** (attempt - 1);
      policy.log.warn({ url: e.url, attempt, retryInMs: wait, err: e.message }, `${what} failed, retrying`);
      await delay(wait, policy.signal);
    }
  }
}
