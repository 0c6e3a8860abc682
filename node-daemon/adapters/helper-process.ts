/**
 * The namespace helper server: `shifter-nshelper serve`, spawned once per daemon process
 * (single-threaded, as the namespace work needs) and then asked over a SOCK_SEQPACKET control
 * socket. It forks a child per request, so no request pays Node's process spawn; each request
 * brings its own reply socket, so concurrent requests never mix. The server dies with this
 * process (PR_SET_PDEATHSIG) and exits when the control socket closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import { loadAddon, nativeDir } from '../../common/native-addon.js';
import { helperFailureError, parseHelperFailure } from './helper-failure.js';

export interface HelperResult {
  text: string;
  fds: number[];
  /** Milliseconds from the request sent to the answer received. */
  ms: number;
}

/** The helper kills a request stuck longer (alarm); this is the daemon's own bound. */
const REQUEST_TIMEOUT_MS = 125_000;

interface Server {
  child: ChildProcess;
  control: number;
}

let server: Server | undefined;

function startServer(): Server {
  const addon = loadAddon();
  const [mine, theirs] = addon.socketPair();
  let child: ChildProcess;
  try {
    child = spawn(join(nativeDir(), 'shifter-nshelper'), ['serve', String(process.pid)], {
      stdio: ['ignore', 'ignore', 'inherit', theirs],
      env: { PATH: '/usr/bin:/usr/sbin:/bin:/sbin' },
    });
  } finally {
    addon.closeFd(theirs);
  }
  const s: Server = { child, control: mine };
  const gone = () => {
    if (server === s) server = undefined;
    if (s.control >= 0) addon.closeFd(s.control);
    s.control = -1;
  };
  child.once('error', gone);
  child.once('exit', gone);
  // The server must not keep the daemon (or a test process) alive on its own.
  child.unref();
  return s;
}

function waitReadable(fd: number, ms: number): Promise<boolean> {
  const addon = loadAddon();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      addon.cancelWait(id);
      resolve(false);
    }, ms);
    const id = addon.waitReadable(fd, () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/** The hook output lines that follow the first line of an answer (native/nshelper/hook.h). */
export function hookLogLines(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .filter((l) => l.length > 0);
}

/**
 * @param request "attach-image <path>", "create-env" or "run-userhook"
 * @param body the spec, handed over as a memfd (any size), or null
 * @param passFds fds the request needs (the image mount fd for create-env)
 * @param expectFds how many fds a successful answer carries
 * @param extraMs how much longer than usual the request may take (its hooks' time limits)
 */
export async function runHelper(
  request: string,
  body: Buffer | null,
  passFds: number[],
  expectFds: number,
  extraMs = 0,
): Promise<HelperResult> {
  const addon = loadAddon();
  const s = server ?? (server = startServer());
  const [mine, theirs] = addon.socketPair();
  const started = process.hrtime.bigint();
  const what = request.split(' ')[0];
  try {
    const bodyFd = body ? addon.memfdFromBuffer(body) : -1;
    try {
      if (s.control < 0) throw new ShifterError('INTERNAL', 'shifter-nshelper is not running (run "npm run build")');
      addon.sendWithFds(s.control, Buffer.from(request), [theirs, ...(bodyFd >= 0 ? [bodyFd] : []), ...passFds]);
    } catch (e) {
      if (e instanceof ShifterError) throw e;
      throw new ShifterError(
        'INTERNAL',
        `cannot reach shifter-nshelper: ${(e as Error).message} (run "npm run build")`,
        e,
      );
    } finally {
      addon.closeFd(theirs);
      if (bodyFd >= 0) addon.closeFd(bodyFd);
    }
    const limitMs = REQUEST_TIMEOUT_MS + extraMs;
    if (!(await waitReadable(mine, limitMs))) {
      throw new ShifterError(
        'IO_ERROR',
        `shifter-nshelper ${what} did not answer within ${limitMs / 1000} s (a hung image source?)`,
      );
    }
    const result = addon.recvWithFds(mine, 8192, expectFds + 1);
    const text = result?.data.toString('utf8') ?? '';
    const failure = parseHelperFailure(text);
    if (!result || text === '' || failure) {
      result?.fds.forEach((fd) => addon.closeFd(fd));
      if (failure) throw helperFailureError(failure);
      const why = 'killed, or it took longer than its 120 s limit';
      throw new ShifterError('IO_ERROR', `shifter-nshelper ${what} ended without an answer (${why})`);
    }
    if (result.fds.length !== expectFds) {
      result.fds.forEach((fd) => addon.closeFd(fd));
      throw new ShifterError(
        'INTERNAL',
        `shifter-nshelper ${what} returned ${result.fds.length} fds, expected ${expectFds}`,
      );
    }
    return { text, fds: result.fds, ms: Number(process.hrtime.bigint() - started) / 1e6 };
  } finally {
    addon.closeFd(mine);
  }
}
