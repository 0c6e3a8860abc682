/**
 * Reads a file named by a client (--env-file) with the client's own credentials: shifterd is
 * root, and reading the path itself would let anyone pull /etc/shadow into an environment.
 * `setpriv` (util-linux) switches uid, gid and the full group list before `cat` opens it;
 * Node's spawn({uid, gid}) would drop the supplementary groups.
 */
import { spawn } from 'node:child_process';
import { isAbsolute, resolve } from 'node:path';
import { ShifterError } from '../common/errors.js';

export interface FileReader {
  uid: number;
  gid: number;
  groups: readonly number[];
}

const MAX_BYTES = 1024 * 1024;

export function readFileAsUser(path: string, cwd: string, who: FileReader): Promise<string> {
  const full = isAbsolute(path) ? path : resolve(cwd === '' ? '/' : cwd, path);
  const groups = [...new Set(who.groups)];
  const args = [
    `--reuid=${who.uid}`,
    `--regid=${who.gid}`,
    groups.length > 0 ? `--groups=${groups.join(',')}` : '--clear-groups',
    '--',
    'cat',
    '--',
    full,
  ];
  return new Promise((resolvePromise, reject) => {
    const child = spawn('setpriv', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: '/usr/bin:/bin' } });
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout.on('data', (d: Buffer) => {
      size += d.length;
      if (size > MAX_BYTES) child.kill('SIGKILL');
      else chunks.push(d);
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new ShifterError('INTERNAL', `cannot run setpriv to read ${full}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (size > MAX_BYTES) return reject(new ShifterError('BAD_ARGUMENT', `--env-file ${full} is larger than 1 MiB`));
      if (code !== 0) {
        const why =
          stderr
            .trim()
            .split('\n')
            .pop()
            ?.replace(/^cat: /, '') ?? `exit ${code}`;
        return reject(new ShifterError('BAD_ARGUMENT', `--env-file: cannot read ${why}`));
      }
      resolvePromise(Buffer.concat(chunks).toString('utf8'));
    });
  });
}
