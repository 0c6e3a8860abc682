/**
 * How shifter-nshelper reports a failure: one reply `error <errno> <class> <text>` (see
 * native/nshelper/failure.h, whose enum this mirrors). The class decides the ErrorCode; the text
 * is shown as it is and never parsed. For class `hook` the number is the module hook's exit code
 * (128+N when killed by signal N, 124 when killed at moduleHookTimeout), which the launch
 * exits with.
 */
import { ShifterError, type ErrorCode } from '../../common/errors.js';

export const HELPER_FAILURE_CLASSES = ['system', 'denied', 'missing', 'unsafe', 'spec', 'program', 'hook'] as const;

export type HelperFailureClass = (typeof HELPER_FAILURE_CLASSES)[number];

const ERROR_CODES: Record<HelperFailureClass, ErrorCode> = {
  system: 'IO_ERROR',
  denied: 'PERMISSION_DENIED',
  missing: 'NOT_FOUND',
  unsafe: 'UNSAFE_CONTENT',
  spec: 'INTERNAL',
  program: 'IO_ERROR',
  hook: 'IO_ERROR',
};

export interface HelperFailure {
  errno: number;
  failureClass: HelperFailureClass;
  /** The one line for the user, e.g. `shifter-nshelper: open image: /x.sqfs: No such file or directory`. */
  text: string;
}

function isFailureClass(s: string): s is HelperFailureClass {
  return (HELPER_FAILURE_CLASSES as readonly string[]).includes(s);
}

/** The failure a reply reports, or undefined when the reply is an answer. */
export function parseHelperFailure(reply: string): HelperFailure | undefined {
  if (!reply.startsWith('error ')) return undefined;
  const [, errnoText = '', failureClass = '', ...words] = reply.split(' ');
  const errno = Number(errnoText);
  if (!/^\d+$/.test(errnoText) || !isFailureClass(failureClass) || words.length === 0) {
    return { errno: 0, failureClass: 'spec', text: `shifter-nshelper sent a malformed failure reply: ${reply}` };
  }
  return { errno, failureClass, text: words.join(' ') };
}

/** A module hook that failed: the launch exits with the hook's own exit code. */
export class HookFailure extends ShifterError {
  readonly exitCode: number;

  constructor(exitCode: number, message: string, cause: HelperFailure) {
    super('IO_ERROR', message, cause);
    this.name = 'HookFailure';
    this.exitCode = exitCode;
  }
}

export function helperFailureError(f: HelperFailure): ShifterError {
  if (f.failureClass === 'hook') return new HookFailure(f.errno > 0 && f.errno < 256 ? f.errno : 1, f.text, f);
  return new ShifterError(ERROR_CODES[f.failureClass], f.text, f);
}
