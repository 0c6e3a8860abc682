/**
 * A minimal shifterd stand-in speaking proto/launch-protocol.md, built on the native
 * adapters; the real daemon lives in node-daemon/. `decide` chooses the reply per request.
 */
import { chmodSync } from 'node:fs';
import net from 'node:net';
import { loadAddon, type PeerCredentials } from '../../node-daemon/adapters/index.js';

export interface LaunchRequest {
  argv: string[];
  env: string[];
  cwd: string;
}

export type LaunchReply =
  | { kind: 'error'; exitCode: number; message: string }
  | { kind: 'exec'; userNsFd: number; mntNsFd: number; argv: string[]; env: string[]; cwd: string; notice: string }
  /** Bytes and fds sent as they are: for testing how the launcher copes with a broken daemon. */
  | { kind: 'raw'; data: Buffer; fds: number[] };

const MAX_BODY = 4 * 1024 * 1024;

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function str(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

function list(items: string[]): Buffer {
  return Buffer.concat([u32(items.length), ...items.map(str)]);
}

export function decodeRequest(body: Buffer): LaunchRequest {
  let off = 0;
  const readStr = (): string => {
    const nul = body.indexOf(0, off);
    if (nul < 0) throw new Error('string without NUL');
    const s = body.subarray(off, nul).toString('utf8');
    off = nul + 1;
    return s;
  };
  const readList = (): string[] => {
    const n = body.readUInt32LE(off);
    off += 4;
    return Array.from({ length: n }, readStr);
  };
  const argv = readList();
  const env = readList();
  const cwd = readStr();
  if (off !== body.length) throw new Error('trailing bytes');
  return { argv, env, cwd };
}

export function encodeReply(reply: Exclude<LaunchReply, { kind: 'raw' }>): Buffer {
  const body =
    reply.kind === 'error'
      ? Buffer.concat([
          Buffer.from([0]),
          (() => {
            const b = Buffer.alloc(4);
            b.writeInt32LE(reply.exitCode);
            return b;
          })(),
          Buffer.from(reply.message, 'utf8'),
        ])
      : Buffer.concat([Buffer.from([1]), list(reply.argv), list(reply.env), str(reply.cwd), str(reply.notice)]);
  return Buffer.concat([Buffer.from('SHR1'), u32(body.length), body]);
}

export interface LaunchDaemon {
  socketPath: string;
  close(): Promise<void>;
}

export async function startLaunchDaemon(
  socketPath: string,
  decide: (req: LaunchRequest, cred: PeerCredentials) => Promise<LaunchReply>,
): Promise<LaunchDaemon> {
  const addon = loadAddon();
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let handled = false;
    sock.on('error', () => sock.destroy());
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (handled || buf.length < 8) return;
      if (buf.subarray(0, 4).toString('latin1') !== 'SHL1' || buf.readUInt32LE(4) > MAX_BODY) {
        sock.destroy();
        return;
      }
      const len = buf.readUInt32LE(4);
      if (buf.length < 8 + len) return;
      handled = true;
      const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
      const cred = addon.getPeerCredentials(fd);
      decide(decodeRequest(buf.subarray(8, 8 + len)), cred)
        .then((reply) => {
          const data = reply.kind === 'raw' ? reply.data : encodeReply(reply);
          const fds = reply.kind === 'exec' ? [reply.userNsFd, reply.mntNsFd] : reply.kind === 'raw' ? reply.fds : [];
          const sent = addon.sendWithFds(fd, data, fds);
          sock.end(data.subarray(sent));
        })
        .catch((e: Error) => {
          const data = encodeReply({ kind: 'error', exitCode: 1, message: `shifterd: ${e.message}\n` });
          sock.end(data);
        });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, resolve);
  });
  chmodSync(socketPath, 0o777);
  return {
    socketPath,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
