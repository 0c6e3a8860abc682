/**
 * What a gateway's HTTP answer means, for every client alike (pure). Upstream's gateway answers
 * errors as `{"error": ..., "message": ...}`; its text is relayed to users, so it is cleaned of
 * control characters first (a registry error relayed in it must not be able to move a cursor).
 */
import { ShifterError } from '../errors.js';
import { GatewayAnswerError } from './errors.js';

export interface GatewayAnswer {
  readonly method: string;
  readonly url: string;
  readonly status: number;
  readonly body: string;
  /** The `location` header, for redirects. */
  readonly location?: string;
}

/** Removes C0/C1 control characters (including ESC) so the text prints as plain text. */
export function sanitizeForTerminal(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
}

/** The gateway's own explanation in an error answer, one line of at most 300 characters. */
export function gatewayMessage(body: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (typeof parsed === 'object' && parsed !== null) {
    const o = parsed as Record<string, unknown>;
    for (const k of ['error', 'message', 'status_message']) {
      const v = o[k];
      if (typeof v === 'string' && v.length > 0) return sanitizeForTerminal(v).slice(0, 300);
    }
  }
  const t = sanitizeForTerminal(body).trim();
  return t.length > 0 ? t.slice(0, 300) : 'no explanation given';
}

/**
 * A server-side failure another gateway may not share (upstream's 500s, a proxy's 502/503/504),
 * so the next gateway is asked. 501 ("not implemented") would be the same everywhere.
 */
export function isServerFailure(status: number): boolean {
  return status >= 500 && status !== 501;
}

export function serverFailureError(gateway: string, answer: GatewayAnswer): GatewayAnswerError {
  return new GatewayAnswerError(
    `the image gateway at ${gateway} failed (HTTP ${answer.status}): ${gatewayMessage(answer.body)}`,
    answer.status,
  );
}

/** The JSON of a successful answer, or the error the answer stands for. */
export function interpretAnswer(answer: GatewayAnswer): unknown {
  const { method, url, status, body } = answer;
  if (status >= 200 && status < 300) {
    try {
      return JSON.parse(body) as unknown;
    } catch {
      throw new GatewayAnswerError(
        `the image gateway answered ${method} ${url} with something that is not JSON`,
        status,
      );
    }
  }
  const why = gatewayMessage(body);
  if (status >= 300 && status < 400) {
    const to = sanitizeForTerminal(answer.location ?? '(nowhere)');
    throw new GatewayAnswerError(
      `the image gateway redirected ${url} to ${to}: put the final address in imageGateway`,
      status,
    );
  }
  if (status === 401 || status === 403)
    throw new ShifterError('AUTH_FAILED', `the image gateway refused the request: ${why}`);
  if (status === 404) throw new ShifterError('NOT_FOUND', why);
  if (status === 501) throw new GatewayAnswerError(`this image gateway does not support that yet: ${why}`, status);
  if (status === 400 || status === 422) {
    throw new ShifterError('BAD_ARGUMENT', `the image gateway rejected the request: ${why}`);
  }
  throw new GatewayAnswerError(`the image gateway answered HTTP ${status}: ${why}`, status);
}
