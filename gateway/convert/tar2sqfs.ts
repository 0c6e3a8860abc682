/**
 * The `tar2sqfs` child: a tar stream in on stdin, a squashfs image out.
 * tar2sqfs reports a failed write as "<entry>: I/O error." without the errno, and deletes its
 * partial output. A full disk is recognised from what is left: when the output's filesystem has
 * less free space than the tar fed so far (an upper bound of the image) plus a margin, the error
 * carries code ENOSPC, so it is reported as a full disk rather than blamed on the image.
 */
import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Writable } from 'node:stream';

const FREE_MARGIN_BYTES = 64 * 1024 ** 2;

export interface Tar2sqfsProcess {
  stdin: Writable;
  /** Resolves on exit 0; rejects with tar2sqfs's last stderr lines otherwise. */
  exited: Promise<void>;
  /** Counts tar bytes written to `stdin` (to judge an I/O error). */
  fed(bytes: number): void;
  kill(): void;
}

async function looksFull(outputPath: string, fedBytes: number): Promise<boolean> {
  const fs = await statfs(dirname(outputPath)).catch(() => null);
  return fs !== null && fs.bavail * fs.bsize < fedBytes + FREE_MARGIN_BYTES;
}

export function startTar2sqfs(args: readonly string[], outputPath: string): Tar2sqfsProcess {
  const child = spawn('tar2sqfs', [...args, outputPath], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  let fedBytes = 0;
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  child.stdin.on('error', () => undefined);
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new Error(`cannot run tar2sqfs (install squashfs-tools-ng): ${e.message}`)));
    child.on('close', (code, signal) => {
      if (code === 0) return resolve();
      const last = stderr.trim().split('\n').slice(-3).join(' | ');
      const failure = new Error(`tar2sqfs failed (${signal ?? `exit ${code}`}): ${last}`);
      if (signal !== null || !/I\/O error|No space left/i.test(stderr)) return reject(failure);
      void looksFull(outputPath, fedBytes).then((full) => {
        if (!full) return reject(failure);
        const noSpace = new Error(`tar2sqfs could not write ${outputPath}: no space left`, { cause: failure });
        reject(Object.assign(noSpace, { code: 'ENOSPC' }));
      });
    });
  });
  exited.catch(() => undefined);
  return {
    stdin: child.stdin,
    exited,
    fed: (bytes) => {
      fedBytes += bytes;
    },
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
