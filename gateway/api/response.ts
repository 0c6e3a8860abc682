/**
 * What clients see: upstream's `create_response` record and error body, byte-compatible.
 * The record has exactly 13 keys; an absent value is the string "MISSING" (LABELS too, unless the
 * gateway runs with ENABLE_LABELS, as upstream). Pull progress goes
 * under an extra `progress` key only when the client asks for it (`?progress=1`), so upstream
 * clients that compare keys never see it.
 */
import { STATUS_CODES } from 'node:http';
import type { ErrorCode } from '../../common/errors.js';
import type { ImageRecord } from '../store/record.js';

export const RECORD_KEYS = [
  'id',
  'system',
  'itype',
  'tag',
  'status',
  'userACL',
  'groupACL',
  'ENV',
  'ENTRY',
  'WORKDIR',
  'LABELS',
  'last_pull',
  'status_message',
] as const;

export type ApiRecord = Record<(typeof RECORD_KEYS)[number], unknown> & { progress?: unknown };

/**
 * Upstream keeps an image's labels only when the gateway runs with `ENABLE_LABELS` in its
 * environment (any value); otherwise LABELS is "MISSING", as clients that compare records expect.
 * They are always kept in the store and in `.meta`, so setting it later shows them.
 */
export function labelsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.ENABLE_LABELS !== undefined;
}

export function toApiRecord(rec: ImageRecord, withProgress = false): ApiRecord {
  const src = rec as unknown as Record<string, unknown>;
  const out = {} as ApiRecord;
  const labels = labelsEnabled();
  for (const k of RECORD_KEYS) {
    const v = k === 'LABELS' && !labels ? null : src[k];
    out[k] = v === null || v === undefined ? 'MISSING' : v;
  }
  if (withProgress) out.progress = rec.progress ?? 'MISSING';
  return out;
}

/** Exactly upstream's Content-Type: its C `shifterimg` ignores any answer whose type differs at all. */
export const JSON_TYPE = 'application/json';

/** The one error body of every 4xx/5xx answer, upstream's `not_found` shape with the real status. */
export interface ApiError {
  status: number;
  error: string;
  message: string;
}

export function apiError(status: number, error: string, url: string): ApiError {
  return { status, error, message: `${STATUS_CODES[status] ?? 'Error'}: ${url}` };
}

/** Stands for the URL in answers given before a request line could be read. */
export const UNREAD_URL = '(request not read)';

/**
 * A whole HTTP/1.1 error answer for sockets no request object exists for (bad framing, timeouts,
 * refused connections). The connection is closed after it.
 */
export function rawErrorResponse(status: number, error: string, url: string, extraHeaders: string[] = []): string {
  const body = JSON.stringify(apiError(status, error, url));
  return [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}`,
    `Content-Type: ${JSON_TYPE}`,
    `Content-Length: ${Buffer.byteLength(body)}`,
    'Connection: close',
    ...extraHeaders,
    '',
    body,
  ].join('\r\n');
}

export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'NOT_FOUND':
      return 404;
    case 'BAD_ARGUMENT':
    case 'LIMIT_EXCEEDED':
      return 400;
    case 'AUTH_FAILED':
      return 401;
    case 'PERMISSION_DENIED':
      return 403;
    case 'UNREACHABLE':
    case 'DISK_FULL':
      return 503;
    default:
      return 500;
  }
}
