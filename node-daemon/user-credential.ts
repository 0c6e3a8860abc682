/**
 * A MUNGE credential that carries the caller's uid/gid, made by running `munge` as the caller:
 * shifterd is root, and a credential it made itself would claim root at the gateway.
 * (munge encodes only uid and gid, so spawn's uid/gid switch is enough.)
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Caller } from './image-resolver.js';

/** Resolves undefined when munge is not usable here (no socket, no binary, munged down). */
export function mungeCredentialAs(caller: Caller, socket: string): Promise<string | undefined> {
  if (!existsSync(socket)) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const child = spawn('munge', ['--no-input', '--socket', socket], {
      uid: caller.uid,
      gid: caller.gid,
      stdio: ['ignore', 'pipe', 'ignore'],
      env: { PATH: '/usr/bin:/bin' },
    });
    let out = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.on('error', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve(code === 0 && out.trim() !== '' ? out.trim() : undefined);
    });
  });
}
