/**
 * How shifter-nshelper reports a failure: one reply `error <errno> <class> <text>` (see
 * native/nshelper/failure.h, whose enum this mirrors). The class decides the ErrorCode; the text
 * is shown as it is and never parsed.
 */
import { ShifterError, type ErrorCode } from '../../common/errors.js';

export const HELPER_FAILURE_CLASSES = ['system', 'denied', 'missing', 'unsafe', 'spec', 'program'] as const;

export type HelperFailureClass = (typeof HELPER_FAILURE_CLASSES)[number];

const ERROR_CODES: Record<HelperFailureClass, ErrorCode> = {
  system: 'IO_ERROR',
  denied: 'PERMISSION_DENIED',
  missing: 'NOT_FOUND',
  unsafe: 'UNSAFE_CONTENT',
  spec: 'INTERNAL',
  program: 'IO_ERROR',
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

export function helperFailureError(f: HelperFailure): ShifterError {
  return new ShifterError(ERROR_CODES[f.failureClass], f.text, f);
}
