/**
 * shifterimg's exit codes. Scripts branch on these, so they are part of the interface: keep the
 * numbers stable and keep the help text (`EXIT_CODES_HELP`) in step.
 */
import { isShifterError, type ErrorCode } from '../../common/errors.js';

export const EXIT = {
  OK: 0,
  /** lookup: no such image on this system; pull: the gateway reports FAILURE. */
  NOT_FOUND_OR_FAILED: 1,
  /** bad command line, bad or missing udiRoot.conf. */
  USAGE_OR_CONFIG: 2,
  /** no gateway in imageGateway answered (refused, timed out, DNS). */
  UNREACHABLE: 3,
  /** no munge credential could be made, or the gateway refused it. */
  AUTH_REFUSED: 4,
  /** the gateway answered with an error or with something unreadable. */
  GATEWAY_ERROR: 5,
  /** a bug in shifterimg. */
  INTERNAL: 70,
  /** Ctrl-C (SIGINT). */
  INTERRUPTED: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    image not found (lookup), or the pull failed (pull, pullnb)
  2    bad arguments, or a bad or missing udiRoot.conf
  3    the image gateway could not be reached
  4    authentication failed (munge credential, or refused by the gateway)
  5    the image gateway answered with an error
  130  interrupted`;

/** Every error code has its exit code, so a new one cannot fall through to "a bug". */
const BY_CODE: Readonly<Record<ErrorCode, ExitCode>> = {
  BAD_ARGUMENT: EXIT.USAGE_OR_CONFIG,
  BAD_CONFIG: EXIT.USAGE_OR_CONFIG,
  NOT_FOUND: EXIT.NOT_FOUND_OR_FAILED,
  UNREACHABLE: EXIT.UNREACHABLE,
  AUTH_FAILED: EXIT.AUTH_REFUSED,
  PERMISSION_DENIED: EXIT.AUTH_REFUSED,
  // The gateway's answer (or what it relayed from a registry) was an error.
  REGISTRY_ERROR: EXIT.GATEWAY_ERROR,
  DIGEST_MISMATCH: EXIT.GATEWAY_ERROR,
  UNSAFE_CONTENT: EXIT.GATEWAY_ERROR,
  CONVERSION_FAILED: EXIT.GATEWAY_ERROR,
  DISK_FULL: EXIT.GATEWAY_ERROR,
  LIMIT_EXCEEDED: EXIT.GATEWAY_ERROR,
  // shifterimg writes nothing; a local file it cannot read is its config.
  IO_ERROR: EXIT.USAGE_OR_CONFIG,
  INTERNAL: EXIT.INTERNAL,
};

export function exitCodeFor(e: unknown): ExitCode {
  return isShifterError(e) ? BY_CODE[e.code] : EXIT.INTERNAL;
}
