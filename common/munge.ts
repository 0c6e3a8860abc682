/**
 * MUNGE credentials through the `munge`/`unmunge` command-line tools (shared by the gateway and
 * the shifterimg CLI). The CLIs are the stable interface of libmunge and need no native binding.
 * `unmunge` prints `KEY: value` metadata lines, a blank line, then the payload; exit 15 means the
 * credential expired, 17 that it was already used (replayed).
 */
import { spawn } from 'node:child_process';
import { ShifterError } from './errors.js';

/** munged's own default socket: where clients and unmunge look when the config names none. */
export const DEFAULT_MUNGE_SOCKET = '/run/munge/munge.socket.2';

export interface MungeIdentity {
  uid: number;
  gid: number;
  /** Name as unmunge printed it (may be the number when the decoding host does not know it). */
  user: string;
  group: string;
  payload: string;
}

export type MungeFailure = 'expired' | 'replayed' | 'invalid' | 'unavailable';

/** A ShifterError that also says which munge failure happened, so edges can choose a status. */
export class MungeError extends ShifterError {
  readonly failure: MungeFailure;
  constructor(failure: MungeFailure, message: string) {
    super(failure === 'unavailable' ? 'UNREACHABLE' : 'AUTH_FAILED', message);
    this.failure = failure;
  }
}

/**
 * How long munge/unmunge may run. Their own wait for munged is about 10 s and ends with a
 * message of theirs, so this only stops a tool that hangs for another reason.
 */
const DEFAULT_TOOL_TIMEOUT_MS = 20_000;

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function run(cmd: string, args: string[], input: string, timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });
}

function missingTool(tool: string, e: unknown): MungeError {
  const errno = (e as NodeJS.ErrnoException).code;
  if (errno === 'ENOENT') {
    return new MungeError('unavailable', `${tool} is not installed; install the munge package (apt-get install munge)`);
  }
  return new MungeError('unavailable', `cannot run ${tool}: ${(e as Error).message}`);
}

function hung(tool: string, timeoutMs: number, socket: string | undefined): MungeError {
  return new MungeError(
    'unavailable',
    `${tool} did not finish within ${timeoutMs / 1000} s; is munged running${socket ? ` on ${socket}` : ''}?`,
  );
}

export interface MungeEncodeOptions {
  socket?: string;
  ttlSeconds?: number;
  /** Only this uid (and root) may decode the credential. */
  restrictUid?: number;
  /** How long `munge` may take (default 20 s). */
  timeoutMs?: number;
}

/** Encodes `payload` as a MUNGE credential for the calling process's uid/gid. */
export async function mungeEncode(payload: string, opts: MungeEncodeOptions = {}): Promise<string> {
  const args: string[] = [];
  if (opts.socket) args.push('--socket', opts.socket);
  if (opts.ttlSeconds !== undefined) args.push('--ttl', String(opts.ttlSeconds));
  if (opts.restrictUid !== undefined) args.push('--restrict-uid', String(opts.restrictUid));
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  let r: RunResult;
  try {
    r = await run('munge', args, payload, timeoutMs);
  } catch (e) {
    throw missingTool('munge', e);
  }
  if (r.timedOut) throw hung('munge', timeoutMs, opts.socket);
  if (r.code !== 0) {
    const why = r.stderr.trim().replace(/^munge: Error: /, '');
    throw new MungeError(
      'unavailable',
      `munge could not encode a credential: ${why}; is munged running${opts.socket ? ` on ${opts.socket}` : ''}?`,
    );
  }
  return r.stdout.trim();
}

/** Parses `UID: name (1000)` style values. */
function parseIdLine(value: string | undefined, what: string): { name: string; id: number } {
  const m = /^(.*?)\s*\((\d+)\)$/.exec(value ?? '');
  if (!m) throw new MungeError('invalid', `unmunge printed no ${what} line; the credential cannot be trusted`);
  return { name: m[1] || m[2], id: Number(m[2]) };
}

const STALE_STATUSES = ['Expired credential (15)', 'Replayed credential (17)'];

/**
 * Parses unmunge's output: metadata lines up to the first blank line, then the payload verbatim.
 * `acceptStale` also takes expired and replayed credentials (still authentic, only old or seen).
 */
export function parseUnmungeOutput(out: string, acceptStale = false): MungeIdentity {
  const blank = out.indexOf('\n\n');
  const head = blank >= 0 ? out.slice(0, blank) : out;
  const payload = blank >= 0 ? out.slice(blank + 2) : '';
  const fields = new Map<string, string>();
  for (const line of head.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) fields.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  const status = fields.get('STATUS');
  if (status !== 'Success (0)' && !(acceptStale && status !== undefined && STALE_STATUSES.includes(status))) {
    throw new MungeError('invalid', `munge credential rejected: ${status ?? 'no STATUS line'}`);
  }
  const uid = parseIdLine(fields.get('UID'), 'UID');
  const gid = parseIdLine(fields.get('GID'), 'GID');
  return { uid: uid.id, user: uid.name, gid: gid.id, group: gid.name, payload };
}

/**
 * Decodes a credential with the munged listening on `socket`. `acceptStale`: an expired or replayed
 * credential is decoded too (upstream shifterimg's saved logins are decoded at every request).
 */
export async function mungeDecode(
  cred: string,
  opts: { socket: string; acceptStale?: boolean },
): Promise<MungeIdentity> {
  let r: RunResult;
  try {
    r = await run('unmunge', ['--socket', opts.socket], cred.trim() + '\n', DEFAULT_TOOL_TIMEOUT_MS);
  } catch (e) {
    throw missingTool('unmunge', e);
  }
  if (r.timedOut) throw hung('unmunge', DEFAULT_TOOL_TIMEOUT_MS, opts.socket);
  if (opts.acceptStale && (r.code === 15 || r.code === 17)) return parseUnmungeOutput(r.stdout, true);
  switch (r.code) {
    case 0:
      return parseUnmungeOutput(r.stdout);
    case 15:
      throw new MungeError(
        'expired',
        'munge credential expired; create a fresh one (it is valid for its TTL, 5 minutes by default) and retry',
      );
    case 17:
      throw new MungeError(
        'replayed',
        'munge credential was already used (replayed); every request needs a fresh credential',
      );
    default: {
      const why =
        r.stderr
          .trim()
          .split('\n')
          .pop()
          ?.replace(/^unmunge: Error: /, '') ?? '';
      if (/socket|connect|No such file/i.test(why)) {
        throw new MungeError(
          'unavailable',
          `cannot reach munged at ${opts.socket}: ${why}; check Platforms.<system>.mungeSocketPath and that munged runs`,
        );
      }
      throw new MungeError('invalid', `munge credential is not valid: ${why || `unmunge exit ${r.code}`}`);
    }
  }
}
