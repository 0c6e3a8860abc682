/** The `tar2sqfs` child: a tar stream in on stdin, a squashfs image out. */
import { spawn } from 'node:child_process';
import type { Writable } from 'node:stream';

export interface Tar2sqfsProcess {
  stdin: Writable;
  /** Resolves on exit 0; rejects with tar2sqfs's last stderr lines otherwise. */
  exited: Promise<void>;
  kill(): void;
}

export function startTar2sqfs(args: readonly string[], outputPath: string): Tar2sqfsProcess {
  const child = spawn('tar2sqfs', [...args, outputPath], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr = (stderr + d).slice(-4096); });
  child.stdin.on('error', () => undefined);
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot run tar2sqfs (install squashfs-tools-ng): ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new Error(`tar2sqfs failed (${signal ?? `exit ${code}`}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
    });
  });
  exited.catch(() => undefined);
  return {
    stdin: child.stdin,
    exited,
    kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); },
  };
}
