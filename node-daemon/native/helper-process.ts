/**
 * Runs `shifter-nshelper` (fork+exec: the namespace work needs a single-threaded process) and
 * collects its result: one SOCK_SEQPACKET message with fds, sent on the child's fd 3.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ShifterError, type ErrorCode } from '../../common/errors.js';
import { loadAddon, nativeDir } from './addon.js';

export interface HelperResult {
  text: string;
  fds: number[];
  /** Milliseconds from spawn to the result. */
  ms: number;
}

function classify(message: string): ErrorCode {
  if (message.includes('symlink in the image')) return 'UNSAFE_CONTENT';
  if (message.includes('Permission denied') || message.includes('Operation not permitted')) return 'PERMISSION_DENIED';
  if (message.includes('No such file or directory')) return 'NOT_FOUND';
  return 'IO_ERROR';
}

/** A helper stuck this long (e.g. mounting an image served by a hung FUSE server) is killed. */
const HELPER_TIMEOUT_MS = 120_000;

/**
 * @param inheritFds fds given to the helper as fd 4, 5, ... (fd 3 is the result socket)
 * @param expectFds how many fds a successful result carries
 */
export async function runHelper(args: string[], input: Buffer | null, inheritFds: number[], expectFds: number): Promise<HelperResult> {
  const addon = loadAddon();
  const [mine, theirs] = addon.socketPair();
  const started = process.hrtime.bigint();
  try {
    const child = spawn(join(nativeDir(), 'shifter-nshelper'), args, {
      stdio: [input ? 'pipe' : 'ignore', 'ignore', 'pipe', theirs, ...inheritFds],
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (chunk: string) => {
      if (stderr.length < 65536) stderr += chunk;
    });
    if (input) {
      child.stdin!.on('error', () => { /* the exit status reports the failure */ });
      child.stdin!.end(input);
    }
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, HELPER_TIMEOUT_MS);
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (c) => resolve(c));
    })
      .catch((e: Error) => {
        throw new ShifterError('INTERNAL', `cannot run shifter-nshelper: ${e.message} (run "npm run build")`, e);
      })
      .finally(() => clearTimeout(timer));
    if (timedOut) {
      throw new ShifterError('IO_ERROR', `shifter-nshelper ${args[0]} did not finish within ${HELPER_TIMEOUT_MS / 1000} s and was killed (a hung image source?)`);
    }
    const result = addon.recvWithFds(mine, 4096, expectFds + 1);
    if (code !== 0 || !result) {
      result?.fds.forEach((fd) => addon.closeFd(fd));
      const message = stderr.trim().split('\n').pop() || `shifter-nshelper ${args[0]} exited with status ${code}`;
      throw new ShifterError(classify(message), message);
    }
    if (result.fds.length !== expectFds) {
      result.fds.forEach((fd) => addon.closeFd(fd));
      throw new ShifterError('INTERNAL', `shifter-nshelper ${args[0]} returned ${result.fds.length} fds, expected ${expectFds}`);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    return { text: result.data.toString('utf8'), fds: result.fds, ms };
  } finally {
    addon.closeFd(mine);
    addon.closeFd(theirs);
  }
}
