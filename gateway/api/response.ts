/**
 * What clients see: upstream's `create_response` record and error body, byte-compatible.
 * The record has exactly 13 keys; an absent value is the string "MISSING". Pull progress goes
 * under an extra `progress` key only when the client asks for it (`?progress=1`), so upstream
 * clients that compare keys never see it.
 */
import type { ErrorCode } from '../../common/errors.js';
import type { ImageRecord } from '../store/record.js';

export const RECORD_KEYS = [
  'id', 'system', 'itype', 'tag', 'status', 'userACL', 'groupACL', 'ENV', 'ENTRY', 'WORKDIR', 'LABELS',
  'last_pull', 'status_message',
] as const;

export type ApiRecord = Record<(typeof RECORD_KEYS)[number], unknown> & { progress?: unknown };

export function toApiRecord(rec: ImageRecord, withProgress = false): ApiRecord {
  const src = rec as unknown as Record<string, unknown>;
  const out = {} as ApiRecord;
  for (const k of RECORD_KEYS) {
    const v = src[k];
    out[k] = v === null || v === undefined ? 'MISSING' : v;
  }
  if (withProgress) out.progress = rec.progress ?? 'MISSING';
  return out;
}

export interface ApiError { status: number; error: string; message: string }

const REASONS: Record<number, string> = {
  400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error',
  501: 'Not Implemented', 503: 'Service Unavailable',
};

export function apiError(status: number, error: string, url: string): ApiError {
  return { status, error, message: `${REASONS[status] ?? 'Error'}: ${url}` };
}

export function httpStatusFor(code: ErrorCode): number {
  switch (code) {
    case 'NOT_FOUND': return 404;
    case 'BAD_ARGUMENT': return 400;
    case 'AUTH_FAILED': return 401;
    case 'PERMISSION_DENIED': return 403;
    case 'UNREACHABLE': return 503;
    case 'DISK_FULL': return 503;
    default: return 500;
  }
}
