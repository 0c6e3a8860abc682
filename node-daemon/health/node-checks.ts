/**
 * The checks of shifter-node-check: each asks the real thing (shifterd over its sockets, the
 * gateway over HTTP, munged through munge/unmunge, the kernel through /dev and /proc) and turns
 * what happened into a CheckResult naming what to do. None of them changes anything.
 */
import * as grpc from '@grpc/grpc-js';
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import net from 'node:net';
import type { UdiRootConfig } from '../../common/config/udiroot-conf.js';
import { describeError } from '../../common/errors.js';
import { mungeDecode, mungeEncode } from '../../common/munge.js';
import { loadShifterdProto, shifterdServiceClient } from '../admin-server.js';
import { REPLY_MAGIC, encodeRequest } from '../launch-codec.js';
import { failed, passed, type CheckResult } from './check-result.js';

const ERRNO_WORDS: Readonly<Record<string, string>> = {
  ENOENT: 'no such file or directory',
  ECONNREFUSED: 'connection refused',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ETIMEDOUT: 'timed out',
  ENOTSOCK: 'not a socket',
  EHOSTUNREACH: 'no route to host',
  ENOTFOUND: 'host name not found',
};

/** An error as the user reads it: the errno in words, else the message. */
function errnoText(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code === undefined ? describeError(e) : (ERRNO_WORDS[code] ?? code);
}

const notRunning = (e: unknown): boolean => ['ENOENT', 'ECONNREFUSED'].includes(`${(e as NodeJS.ErrnoException).code}`);

/** Connects and hangs up: whether anything listens on the unix socket. */
function probe(socket: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket, () => {
      conn.destroy();
      resolve();
    });
    conn.setTimeout(timeoutMs, () => conn.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    conn.on('error', reject);
  });
}

/** Sends the launch `shifter --version` (which runs nothing) and reads shifterd's answer. */
function askVersion(socket: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(socket);
    const chunks: Buffer[] = [];
    conn.setTimeout(timeoutMs, () => conn.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    conn.on('connect', () => conn.end(encodeRequest({ argv: ['shifter', '--version'], env: [], cwd: '/' })));
    conn.on('data', (d) => chunks.push(d));
    conn.on('error', reject);
    conn.on('close', () => {
      const reply = Buffer.concat(chunks);
      const magic = reply.subarray(0, 4).toString('latin1');
      if (magic !== REPLY_MAGIC || reply.length < 13 || reply[8] !== 0 || reply.readInt32LE(9) !== 0) {
        reject(new Error(`unexpected reply (${reply.length} bytes): not a shifterd of this protocol`));
        return;
      }
      resolve(reply.subarray(13).toString('utf8').trim());
    });
  });
}

export async function checkLaunchSocket(socket: string, timeoutMs: number): Promise<CheckResult> {
  const name = `shifterd launch socket ${socket}`;
  try {
    return passed(name, `answered ${await askVersion(socket, timeoutMs)}`);
  } catch (e) {
    return failed(
      name,
      notRunning(e) ? `shifterd is not running (${errnoText(e)})` : errnoText(e),
      'start shifterd (systemctl start shifterd) and read its log (journalctl -u shifterd)',
    );
  }
}

export async function checkAdminSocket(socket: string, timeoutMs: number): Promise<CheckResult> {
  const name = `shifterd admin socket ${socket}`;
  try {
    await probe(socket, timeoutMs);
  } catch (e) {
    if (notRunning(e)) return failed(name, `shifterd is not running (${errnoText(e)})`, 'start shifterd');
    return failed(name, errnoText(e), 'run this check as root (the admin socket is root only)');
  }
  const Client = shifterdServiceClient(loadShifterdProto());
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    const status = await new Promise<{ environments: number; configGeneration: number }>((resolve, reject) => {
      const call = client as unknown as {
        Status(req: object, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r: never) => void): void;
      };
      call.Status({}, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
    return passed(name, `${status.environments} environments, configuration generation ${status.configGeneration}`);
  } catch (e) {
    const problem = (e as grpc.ServiceError).details || describeError(e);
    return failed(name, problem, 'restart shifterd (systemctl restart shifterd) and read its log');
  } finally {
    client.close();
  }
}

export async function checkGateway(config: UdiRootConfig, timeoutMs: number): Promise<CheckResult> {
  const name = 'image gateway';
  if (config.imageGateway.length === 0)
    return failed(name, `imageGateway is not set in ${config.sourceFile}`, 'add e.g. imageGateway=http://imagegw:8000');
  const problems: string[] = [];
  for (const base of config.imageGateway) {
    try {
      const res = await fetch(`${base.replace(/\/+$/, '')}/`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      if (res.ok) return passed(name, `${base} answered HTTP ${res.status}`);
      problems.push(`${base} answered HTTP ${res.status}`);
    } catch (e) {
      const cause = (e as { cause?: unknown }).cause;
      problems.push(`${base}: ${cause === undefined ? describeError(e) : errnoText(cause)}`);
    }
  }
  return failed(
    name,
    problems.join(', '),
    'start shifter-gateway on its host, or fix imageGateway in udiRoot.conf (a firewall may block the port)',
  );
}

export async function checkMunge(config: UdiRootConfig): Promise<CheckResult> {
  const name = `munge ${config.mungeSocketPath}`;
  const payload = `shifter-node-check ${process.pid}`;
  try {
    const cred = await mungeEncode(payload, { socket: config.mungeSocketPath });
    const decoded = await mungeDecode(cred, { socket: config.mungeSocketPath });
    if (decoded.payload !== payload || decoded.uid !== process.getuid?.())
      return failed(name, 'a credential decoded to something else', 'check that munged runs with the site key');
    return passed(name, `encoded and decoded a credential as uid ${decoded.uid}`);
  } catch (e) {
    return failed(
      name,
      describeError(e),
      'start munged (systemctl start munge) with the same key as the gateway host, or fix mungeSocketPath',
    );
  }
}

async function isCharDevice(path: string): Promise<string | undefined> {
  try {
    if (!(await stat(path)).isCharacterDevice()) return `${path} is not a character device`;
    await access(path, constants.R_OK | constants.W_OK);
    return undefined;
  } catch (e) {
    return `${path}: ${errnoText(e)}`;
  }
}

async function kernelFilesystems(): Promise<string[]> {
  const text = await readFile('/proc/filesystems', 'utf8');
  return text.split('\n').map((l) => l.split('\t').pop()?.trim() ?? '');
}

export async function checkLoopDevices(): Promise<CheckResult> {
  const problem = await isCharDevice('/dev/loop-control');
  return problem === undefined
    ? passed('loop devices', '/dev/loop-control is usable')
    : failed('loop devices', problem, 'load the loop module (modprobe loop) and run this check as root');
}

export async function checkSquashfs(): Promise<CheckResult> {
  return (await kernelFilesystems()).includes('squashfs')
    ? passed('squashfs', 'the kernel lists squashfs in /proc/filesystems')
    : failed('squashfs', 'squashfs is not in /proc/filesystems', 'load the module (modprobe squashfs)');
}

export async function checkFuse(config: UdiRootConfig): Promise<CheckResult> {
  const name = `FUSE (lazyImageCache=${config.lazyImageCache?.dir})`;
  const device = await isCharDevice('/dev/fuse');
  if (device !== undefined) return failed(name, device, 'load the fuse module (modprobe fuse) and run this as root');
  if (!(await kernelFilesystems()).includes('fuse'))
    return failed(name, 'fuse is not in /proc/filesystems', 'load the module (modprobe fuse)');
  return passed(name, '/dev/fuse is usable and the kernel lists fuse');
}
