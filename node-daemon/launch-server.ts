/**
 * The launch socket: every user's `shifter` connects here (mode 0666). The caller's identity is
 * read from the kernel (SO_PEERCRED/SO_PEERGROUPS) when the connection is accepted, never from
 * the request. One request, one reply, then the connection is closed.
 */
import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../common/logger.js';
import { ShifterError } from '../common/errors.js';
import type { NativeAddon, PeerCredentials } from '../common/native-addon.js';
import { decodeRequest, encodeErrorReply, encodeExecReply, requestLength, ProtocolError } from './launch-codec.js';
import type { LaunchService } from './launch-service.js';

export interface LaunchServer {
  readonly path: string;
  close(): Promise<void>;
}

const REQUEST_TIMEOUT_MS = 30_000;

/** The fd libuv holds for an accepted unix socket (not in Node's public API). */
function socketFd(socket: Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0)
    throw new ShifterError('INTERNAL', 'cannot get the fd of an accepted connection');
  return fd;
}

function isListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Creates the socket's directory (0755) and removes a stale socket; refuses to steal a live one. */
export async function prepareSocketPath(path: string): Promise<void> {
  const dir = dirname(path);
  const created = await mkdir(dir, { recursive: true, mode: 0o755 });
  if (created !== undefined) await chmod(dir, 0o755);
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket())
    throw new ShifterError('BAD_CONFIG', `${path} exists and is not a socket: remove it or choose another --socket`);
  if (await isListening(path)) throw new ShifterError('BAD_CONFIG', `another shifterd is already serving ${path}`);
  await unlink(path);
}

export async function listenUnix(server: Server, path: string, mode: number): Promise<void> {
  await prepareSocketPath(path);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(path, mode);
}

export async function startLaunchServer(opts: {
  socketPath: string;
  service: LaunchService;
  addon: NativeAddon;
  log: Logger;
}): Promise<LaunchServer> {
  const { service, addon, log } = opts;
  const open = new Set<Socket>();

  const handle = (socket: Socket): void => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    socket.on('error', () => socket.destroy());
    let fd: number;
    let peer: PeerCredentials;
    try {
      fd = socketFd(socket);
      peer = addon.getPeerCredentials(fd);
    } catch (e) {
      log.error({ err: e }, 'cannot read the peer credentials of a connection');
      socket.destroy();
      return;
    }
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy());
    let buf = Buffer.alloc(0);
    let started = false;
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk]);
      let total: number | undefined;
      try {
        total = requestLength(buf);
        if (total === undefined || buf.length < total) return;
        if (buf.length > total) throw new ProtocolError('bytes after the request');
      } catch (e) {
        log.warn({ pid: peer.pid, uid: peer.uid, err: (e as Error).message }, 'bad launch request');
        socket.destroy();
        return;
      }
      if (started) return;
      started = true;
      socket.off('data', onData);
      socket.setTimeout(0);
      void respond(socket, fd, peer, buf);
    };
    socket.on('data', onData);
  };

  const respond = async (socket: Socket, fd: number, peer: PeerCredentials, raw: Buffer): Promise<void> => {
    let request;
    try {
      request = decodeRequest(raw);
    } catch (e) {
      log.warn({ pid: peer.pid, uid: peer.uid, err: (e as Error).message }, 'bad launch request');
      socket.destroy();
      return;
    }
    const outcome = await service.launch(request, peer);
    if (socket.destroyed) {
      if (outcome.kind === 'exec') outcome.lease.release();
      return;
    }
    if (outcome.kind === 'error') {
      socket.end(encodeErrorReply(outcome.exitCode, outcome.message));
      return;
    }
    try {
      const reply = encodeExecReply(outcome.argv, outcome.env, outcome.cwd, outcome.notice);
      const env = outcome.lease.env;
      const sent = addon.sendWithFds(fd, reply, [env.userNsFd, env.mntNsFd]);
      // The kernel holds its own references to the fds in flight: ours may go now.
      outcome.lease.release();
      if (sent < reply.length) socket.end(reply.subarray(sent));
      else socket.end();
      log.debug({ pid: peer.pid, uid: peer.uid, argv0: outcome.argv[0] }, 'launch');
    } catch (e) {
      outcome.lease.release();
      const reply = service.errorOutcome(e, { pid: peer.pid, uid: peer.uid });
      if (reply.kind === 'error') socket.end(encodeErrorReply(reply.exitCode, reply.message));
      else socket.destroy();
    }
  };

  const server = createServer({ allowHalfOpen: true }, handle);
  await listenUnix(server, opts.socketPath, 0o666);
  log.info({ socket: opts.socketPath }, 'launch socket listening');
  return {
    path: opts.socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
}
