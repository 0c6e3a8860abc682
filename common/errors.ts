/**
 * Errors are values: every failure a user or admin can see carries a stable code (for scripts and
 * exit codes) and a message that names the problem and, where there is one, the fix.
 * Components throw `ShifterError` and the edges (CLI, REST, gRPC) turn it into one line of text,
 * an exit code or an HTTP status; anything else reaching an edge is a bug and is logged as such.
 */
export type ErrorCode =
  | 'BAD_ARGUMENT' // the user typed something we cannot parse
  | 'BAD_CONFIG' // a config file key is missing or invalid
  | 'NOT_FOUND' // image, tag or record unknown
  | 'PERMISSION_DENIED' // ACL or identity check refused
  | 'AUTH_FAILED' // munge or registry credentials rejected
  | 'UNREACHABLE' // a server (gateway, registry, daemon) did not answer
  | 'REGISTRY_ERROR' // the registry answered with something we cannot use
  | 'DIGEST_MISMATCH' // content did not match its digest
  | 'UNSAFE_CONTENT' // an image tried to reach outside its root
  | 'CONVERSION_FAILED' // tar2sqfs or a layer decompressor failed
  | 'IO_ERROR' // local filesystem trouble
  | 'DISK_FULL' // a filesystem the service writes to is full: the site's problem, not the request's
  | 'LIMIT_EXCEEDED' // an image is bigger than a site limit allows (imagemanager.json Limits)
  | 'INTERNAL'; // a bug: report it

export class ShifterError extends Error {
  readonly code: ErrorCode;
  override readonly cause?: unknown;

  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(message);
    this.name = 'ShifterError';
    this.code = code;
    this.cause = cause;
  }
}

export function isShifterError(e: unknown): e is ShifterError {
  return e instanceof ShifterError;
}

/** A one-line description of any thrown value, for messages shown to people. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}

/** Wraps an unknown failure as a ShifterError, keeping ShifterErrors as they are. */
export function asShifterError(e: unknown, code: ErrorCode, context: string): ShifterError {
  if (isShifterError(e)) return e;
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const suffix = errno ? ` (${errno})` : '';
  return new ShifterError(code, `${context}: ${describeError(e)}${suffix}`, e);
}
