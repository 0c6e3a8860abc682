/**
 * A real shifterd on a temp socket with a temp udiRoot.conf and small busybox images in a temp
 * imagePath, and a way to run the real `shifter` launcher as an unprivileged user. Everything
 * lives under one mkdtemp dir; stop() ends exactly the daemon this started, by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const LAUNCHER = join(REPO, 'native', 'build', 'shifter');
export const TEST_USER = 'shiftertest1';
/** A supplementary group given to the launcher process (setpriv --groups), not an NSS group. */
export const EXTRA_GID = 4243;

export function ensureTestUser(): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', TEST_USER], { stdio: 'ignore' });
  } catch {
    // Only root may add it, and without root the files that use it skip their tests (test/helpers/privileges.ts).
    if (process.getuid?.() !== 0) return { uid: -1, gid: -1 };
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', TEST_USER]);
  }
  const uid = Number(execFileSync('id', ['-u', TEST_USER]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', TEST_USER]).toString().trim());
  return { uid, gid };
}

export interface TestImage {
  id: string;
  name: string;
}

function fakeId(label: string): string {
  return createHash('sha256').update(`shifterd-test-${label}-${process.pid}-${Math.random()}`).digest('hex');
}

/** One squashfs (busybox + a few test files), published under several ids with different metadata. */
export function buildImages(
  imagePath: string,
  work: string,
): Record<'full' | 'cmdOnly' | 'bare' | 'private', TestImage> {
  const root = join(work, 'rootfs');
  for (const d of ['bin', 'etc', 'app', 'tmp', 'var/tmp', 'usr/bin']) mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/bin/busybox', join(root, 'bin', 'busybox'));
  chmodSync(join(root, 'bin', 'busybox'), 0o755);
  for (const applet of [
    'sh',
    'ls',
    'cat',
    'id',
    'echo',
    'pwd',
    'env',
    'true',
    'false',
    'sleep',
    'touch',
    'grep',
    'stat',
    'mount',
    'umount',
    'wc',
    'head',
  ]) {
    symlinkSync('busybox', join(root, 'bin', applet));
  }
  writeFileSync(join(root, 'app', 'entry.sh'), '#!/bin/sh\necho "entry:$*"\n', { mode: 0o755 });
  writeFileSync(join(root, 'app', 'noexec.sh'), '#!/bin/sh\necho never\n', { mode: 0o644 });
  writeFileSync(join(root, 'etc', 'image-release'), 'test image\n');
  const squashfs = join(work, 'image.squashfs');
  execFileSync('mksquashfs', [root, squashfs, '-all-root', '-no-xattrs', '-quiet', '-noappend'], { stdio: 'ignore' });

  const publish = (label: string, meta: string[]): TestImage => {
    const id = fakeId(label);
    linkSync(squashfs, join(imagePath, `${id}.squashfs`));
    writeFileSync(join(imagePath, `${id}.meta`), ['FORMAT: squashfs', ...meta, ''].join('\n'), { mode: 0o600 });
    return { id, name: `id:${id}` };
  };
  return {
    full: publish('full', [
      "ENTRY: ['/app/entry.sh']",
      "CMD: ['default-cmd']",
      'WORKDIR: /app',
      'ENV: PATH=/usr/bin:/bin',
      'ENV: IMGVAR=from-image',
    ]),
    cmdOnly: publish('cmd', ["CMD: ['/bin/echo', 'cmd-only']", 'ENV: PATH=/bin']),
    bare: publish('bare', ['ENV: PATH=/bin']),
    private: publish('private', ['ENV: PATH=/bin', 'USERACL: 4242', 'GROUPACL: 4244']),
  };
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class ShifterdFixture {
  readonly dir: string;
  readonly imagePath: string;
  readonly socket: string;
  readonly adminSocket: string;
  readonly configPath: string;
  readonly siteDir: string;
  images!: ReturnType<typeof buildImages>;
  daemon: ChildProcess | undefined;
  log = '';

  constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'shifterd-test-'));
    chmodSync(this.dir, 0o755); // the unprivileged launcher must reach the socket
    this.imagePath = join(this.dir, 'images');
    mkdirSync(this.imagePath, { mode: 0o700 });
    this.socket = join(this.dir, 'run', 'shifterd.sock');
    this.adminSocket = join(this.dir, 'run', 'shifterd-admin.sock');
    this.configPath = join(this.dir, 'udiRoot.conf');
    this.siteDir = join(this.dir, 'site');
    mkdirSync(this.siteDir, { mode: 0o755 });
    writeFileSync(join(this.siteDir, 'site-file'), 'from the site\n', { mode: 0o644 });
    this.images = buildImages(this.imagePath, this.dir);
    this.writeConfig(['siteEnv=SHIFTER_RUNTIME=1']);
  }

  writeConfig(extra: string[]): void {
    writeFileSync(
      this.configPath,
      [`imagePath=${this.imagePath}`, 'populateEtcDynamically=1', `siteFs=${this.siteDir}:/site:ro`, ...extra, ''].join(
        '\n',
      ),
      { mode: 0o644 },
    );
    chmodSync(this.configPath, 0o644);
  }

  /** Starts shifterd and resolves once it logs "shifterd ready". */
  async start(extraArgs: string[] = []): Promise<void> {
    this.log = '';
    const child = spawn(
      process.execPath,
      [
        join(REPO, 'dist', 'node-daemon', 'main.js'),
        '--config',
        this.configPath,
        '--socket',
        this.socket,
        ...extraArgs,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SHIFTER_LOG_LEVEL: 'debug' },
      },
    );
    this.daemon = child;
    // If the test worker dies (uncaught exception), after.always never runs: take the daemon along.
    const reap = (): void => {
      child.kill('SIGKILL');
    };
    process.once('exit', reap);
    child.once('exit', () => process.off('exit', reap));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`shifterd did not start:\n${this.log}`)), 15_000);
      const onData = (d: Buffer): void => {
        this.log += d.toString();
        if (this.log.includes('shifterd ready')) {
          clearTimeout(timer);
          resolve();
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`shifterd exited with ${code}:\n${this.log}`));
      });
    });
  }

  /** Sends `signal` to the daemon this fixture started and waits for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.daemon;
    this.daemon = undefined;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    return exited;
  }

  /** Runs the real launcher as TEST_USER (groups: primary + EXTRA_GID). */
  run(
    args: string[],
    opts: { input?: string; cwd?: string; env?: Record<string, string>; groups?: number[]; uid?: number } = {},
  ): Promise<RunResult> {
    const { gid } = ensureTestUser();
    const groups = opts.groups ?? [gid, EXTRA_GID];
    // `uid`: some other unprivileged uid, with gid = uid and no supplementary groups.
    const ids =
      opts.uid === undefined
        ? [`--reuid=${TEST_USER}`, `--regid=${gid}`, `--groups=${groups.join(',')}`]
        : [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups'];
    const child = spawn('setpriv', [...ids, '--', LAUNCHER, ...args], {
      cwd: opts.cwd ?? '/',
      env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', SHIFTERD_SOCKET: this.socket, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.stdin.on('error', () => undefined); // the command may exit without reading its input
    child.stdin.end(opts.input ?? '');
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  }

  async cleanup(): Promise<void> {
    await this.stop('SIGTERM');
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Loop devices backed by `file` (losetup -j), e.g. to check none leak. */
export function loopDevicesFor(file: string): string[] {
  return execFileSync('losetup', ['-j', file])
    .toString()
    .split('\n')
    .filter((l) => l.trim() !== '');
}
