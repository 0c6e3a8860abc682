/**
 * Remote imageDirs (`accesstype: "remote"`), as upstream's transfer.py: the system's `ssh` and
 * `scp` with the platform's user, key and extra options, to `host[0]`. The binaries, not a JS ssh
 * library: sites already configure them (known_hosts, ProxyJump, ControlMaster, ciphers) in
 * ssh_config and `sshCmdOptions`, and upstream's keys mean exactly their options.
 * Each file is copied under a temporary name (`.tmp-<name>.<random>`, which readers ignore and
 * nobody mounts), synced and renamed in the remote directory, so a final name only ever holds a
 * complete file; the meta goes last, so "meta exists" means "the image is complete", as locally.
 * `BatchMode=yes`: a missing key or an unknown host key fails at once instead of prompting.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { ShifterError } from '../../common/errors.js';
import type { RemotePlatformConfig } from '../config/imagemanager.js';

const CONNECT_TIMEOUT_SECONDS = 30;
/** A command that only renames or tests files; a copy is bounded by the pull's own deadline. */
const COMMAND_TIMEOUT_MS = 120_000;

interface Outcome {
  code: number | null;
  stderr: string;
}

function destination(platform: RemotePlatformConfig): string {
  const { host, user } = platform.remote;
  return user === null ? host : `${user}@${host}`;
}

function commonOptions(platform: RemotePlatformConfig): string[] {
  const key = platform.remote.key;
  return [
    ...(key === null ? [] : ['-i', key]),
    '-o',
    'BatchMode=yes',
    '-o',
    `ConnectTimeout=${CONNECT_TIMEOUT_SECONDS}`,
  ];
}

function run(cmd: string, args: string[], input: string | null, signal?: AbortSignal, timeoutMs?: number) {
  return new Promise<Outcome>((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [input === null ? 'ignore' : 'pipe', 'ignore', 'pipe'], signal });
    let stderr = '';
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), timeoutMs).unref();
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 16_384) stderr += d;
    });
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT') {
        reject(new ShifterError('BAD_CONFIG', `${cmd} is not installed on the gateway host; install openssh-client`));
      } else reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
    if (input !== null) {
      child.stdin?.on('error', () => undefined);
      child.stdin?.end(input);
    }
  });
}

function failure(platform: RemotePlatformConfig, what: string, outcome: Outcome): ShifterError {
  const why = outcome.stderr.trim().split('\n').filter(Boolean).pop() ?? `exit ${outcome.code ?? 'by signal'}`;
  return new ShifterError(
    'UNREACHABLE',
    `${what} on ${destination(platform)} (Platforms.${platform.name}) failed: ${why}`,
  );
}

/** Runs `script` in the remote shell; resolves with its exit code (255: ssh itself failed). */
async function remoteShell(
  platform: RemotePlatformConfig,
  script: string,
  input: string | null,
  signal?: AbortSignal,
): Promise<Outcome> {
  const args = [...commonOptions(platform), ...platform.remote.sshOptions, '--', destination(platform), script];
  return run('ssh', args, input, signal, input === null ? COMMAND_TIMEOUT_MS : undefined);
}

function remotePath(platform: RemotePlatformConfig, name: string): string {
  return `${platform.imageDir}/${name}`;
}

/** Ids go into remote shell commands: hex only (manifest digests, import hashes). */
function checkedId(id: string): string {
  if (!/^[0-9a-f]{1,128}$/.test(id)) throw new ShifterError('BAD_ARGUMENT', `"${id}" is not an image id (hex digits)`);
  return id;
}

function temporaryName(name: string): string {
  return `.tmp-${name}.${randomBytes(6).toString('hex')}`;
}

/** Both `<id>.squashfs` and `<id>.meta` are in the remote imageDir. */
export async function remoteImageComplete(
  platform: RemotePlatformConfig,
  id: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const [image, meta] = [remotePath(platform, `${checkedId(id)}.squashfs`), remotePath(platform, `${id}.meta`)];
  const r = await remoteShell(platform, `test -f ${image} && test -f ${meta}`, null, signal);
  if (r.code === 0) return true;
  if (r.code === 1) return false;
  throw failure(platform, `checking for image ${id}`, r);
}

/** Moves the uploaded `tmp` into `name`; on failure the temporary file is removed. */
async function commit(platform: RemotePlatformConfig, tmp: string, name: string, signal?: AbortSignal) {
  const [from, to] = [remotePath(platform, tmp), remotePath(platform, name)];
  const r = await remoteShell(platform, `chmod 600 ${from} && sync ${from} && mv -f ${from} ${to}`, null, signal);
  if (r.code !== 0) {
    await remoteShell(platform, `rm -f ${from}`, null).catch(() => undefined);
    throw failure(platform, `moving ${name} into ${platform.imageDir}`, r);
  }
}

/** Copies a local file to `<imageDir>/<name>` with scp, visible under its name only when complete. */
export async function putRemoteFile(
  platform: RemotePlatformConfig,
  localPath: string,
  name: string,
  signal?: AbortSignal,
): Promise<void> {
  const tmp = temporaryName(name);
  const target = `${destination(platform)}:${remotePath(platform, tmp)}`;
  const args = ['-q', ...commonOptions(platform), ...platform.remote.scpOptions, '--', localPath, target];
  const r = await run('scp', args, null, signal);
  if (r.code !== 0) {
    await remoteShell(platform, `rm -f ${remotePath(platform, tmp)}`, null).catch(() => undefined);
    throw failure(platform, `copying ${name} to ${platform.imageDir}`, r);
  }
  await commit(platform, tmp, name, signal);
}

/** Writes `text` to `<imageDir>/<name>` through ssh's stdin, visible only when complete. */
export async function putRemoteText(
  platform: RemotePlatformConfig,
  text: string,
  name: string,
  signal?: AbortSignal,
): Promise<void> {
  const tmp = remotePath(platform, temporaryName(name));
  const r = await remoteShell(platform, `umask 077 && cat > ${tmp}`, text, signal);
  if (r.code !== 0) {
    await remoteShell(platform, `rm -f ${tmp}`, null).catch(() => undefined);
    throw failure(platform, `writing ${name} to ${platform.imageDir}`, r);
  }
  await commit(platform, tmp.slice(platform.imageDir.length + 1), name, signal);
}

/**
 * Removes image `id` from a remote imageDir (for expiry): the meta first, so that the image is
 * never seen complete while its squashfs goes. Removing what is not there is not an error.
 */
export async function removeRemote(platform: RemotePlatformConfig, id: string, signal?: AbortSignal): Promise<void> {
  const [image, meta] = [remotePath(platform, `${checkedId(id)}.squashfs`), remotePath(platform, `${id}.meta`)];
  const r = await remoteShell(platform, `rm -f ${meta} && rm -f ${image}`, null, signal);
  if (r.code !== 0) throw failure(platform, `removing image ${id}`, r);
}
