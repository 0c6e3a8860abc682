/**
 * Why an attempt got no answer, in words a user can act on (pure). The causes come from undici
 * (its UND_ERR_* codes, its HTTP parser) or from the system (errno codes); the phase says
 * whether the gateway had started answering, which is the difference between a gateway that
 * closed without answering and one that stopped halfway.
 */
import { describeError } from '../errors.js';
import type { AttemptFailure } from './errors.js';

/** `waiting`: for the status line and headers; `reading`: the body. */
export type AttemptPhase = 'waiting' | 'reading';

export interface AttemptContext {
  readonly gateway: string;
  readonly phase: AttemptPhase;
  readonly timeoutSeconds: number;
  /** The attempt's own deadline (gatewayTimeout) passed and aborted it. */
  readonly deadlinePassed: boolean;
}

/** Thrown by the body reader when an answer is larger than any gateway answer has reason to be. */
export class AnswerTooLargeError extends Error {
  constructor(readonly limitBytes: number) {
    super(`answer larger than ${limitBytes} bytes`);
    this.name = 'AnswerTooLargeError';
  }
}

const ERRNO_REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name not found (DNS did not answer)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  EADDRNOTAVAIL: 'address not available',
};

function codeOf(e: unknown): string | undefined {
  const own = (e as { code?: unknown } | undefined)?.code;
  if (typeof own === 'string') return own;
  const cause = (e as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  return typeof cause === 'string' ? cause : undefined;
}

export function attemptFailure(e: unknown, ctx: AttemptContext): AttemptFailure {
  const { gateway, phase, timeoutSeconds } = ctx;
  const withinTimeout = `within ${timeoutSeconds} s (gatewayTimeout)`;
  const noAnswer = phase === 'waiting' ? `no answer ${withinTimeout}` : `no complete answer ${withinTimeout}`;
  const cut = (verb: string): string =>
    phase === 'waiting'
      ? `${verb} the connection without answering`
      : `${verb} the connection in the middle of its answer`;
  if (ctx.deadlinePassed) return { gateway, reason: noAnswer };
  if (e instanceof AnswerTooLargeError) {
    return {
      gateway,
      reason: `answered with more than ${e.limitBytes / (1024 * 1024)} MiB, more than any gateway answer`,
    };
  }
  if ((e as Error | undefined)?.name === 'HTTPParserError') {
    return { gateway, reason: "answered with something that is not HTTP (is this the image gateway's address?)" };
  }
  const code = codeOf(e);
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return { gateway, reason: `no connection ${withinTimeout}` };
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return { gateway, reason: noAnswer };
    case 'UND_ERR_SOCKET':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
      return { gateway, reason: cut('closed') };
    case 'ECONNRESET':
    case 'EPIPE':
      return { gateway, errno: code, reason: cut('reset') };
    case undefined:
      return { gateway, reason: describeError(e) };
    default:
      break;
  }
  if (/CERT|SSL|TLS/.test(code)) {
    return {
      gateway,
      reason: `TLS failed (${describeError(e)}): check the gateway's certificate, or http:// vs https://`,
    };
  }
  const known = ERRNO_REASONS[code];
  if (known !== undefined) return { gateway, errno: code, reason: known };
  return { gateway, ...(/^E[A-Z0-9]+$/.test(code) ? { errno: code } : {}), reason: `${describeError(e)} (${code})` };
}
