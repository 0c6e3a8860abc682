/**
 * A fresh Debian root to install the packages into, as on a new host: `debootstrap --variant=minbase
 * bookworm` from the Debian mirror this machine uses, cached under /var/cache/shifter-test/ by date
 * (one download per day and machine), copied for each test run. The host's nodejs (NodeSource's, which
 * the mirror does not have) goes in as a .deb rebuilt from the installed package with dpkg-repack,
 * cached by its version. Commands run through enter-root.sh: the root becomes the root of a new mount
 * namespace (not a chroot, where the kernel refuses user namespaces). destroy() kills what ran in
 * the root by pid and unmounts everything it mounted, also after a failure.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CACHE = '/var/cache/shifter-test';
const MIRROR = 'http://deb.debian.org/debian';
const SUITE = 'bookworm';
const ENTER = fileURLToPath(new URL('../../../test/packaging/enter-root.sh', import.meta.url));

export interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function need(program: string, debianPackage: string): void {
  try {
    execFileSync('sh', ['-c', `command -v ${program}`], { stdio: 'ignore' });
  } catch {
    throw new Error(`${program} is not installed: apt-get install ${debianPackage} (scripts/install-deps.sh does)`);
  }
}

function removeTree(dir: string): void {
  execFileSync('rm', ['-rf', '--one-file-system', dir]);
}

/** The pristine root of today, made once (debootstrap into a temp name, renamed when complete). */
export function cachedDebootstrap(): string {
  need('debootstrap', 'debootstrap');
  mkdirSync(CACHE, { recursive: true });
  const name = `${SUITE}-minbase-${new Date().toISOString().slice(0, 10)}`;
  const root = join(CACHE, name);
  if (existsSync(root)) return root;
  const partial = mkdtempSync(join(CACHE, `.${name}-`));
  try {
    execFileSync('debootstrap', ['--variant=minbase', SUITE, partial, MIRROR], { stdio: 'pipe' });
    renameSync(partial, root);
  } catch (e) {
    removeTree(partial);
    throw new Error(`debootstrap ${SUITE} from ${MIRROR} failed: ${(e as { stderr?: Buffer }).stderr?.toString()}`);
  }
  // Earlier days' roots: only today's is used.
  for (const old of readdirSync(CACHE)) {
    if (old !== name && old.startsWith(`${SUITE}-minbase-`)) removeTree(join(CACHE, old));
  }
  return root;
}

/** The host's nodejs as a .deb (dpkg-repack of the installed package), made once per version. */
export function repackedNodejs(): string {
  let version: string;
  try {
    version = execFileSync('dpkg-query', ['-W', '-f=${Version}', 'nodejs']).toString().trim();
  } catch {
    throw new Error('node is not installed from a Debian package (nodejs): the packages depend on nodejs (>= 20)');
  }
  const arch = execFileSync('dpkg', ['--print-architecture']).toString().trim();
  const deb = join(CACHE, `nodejs_${version}_${arch}.deb`);
  if (existsSync(deb)) return deb;
  need('dpkg-repack', 'dpkg-repack');
  mkdirSync(CACHE, { recursive: true });
  const work = mkdtempSync(join(CACHE, '.nodejs-repack-'));
  try {
    execFileSync('dpkg-repack', ['nodejs'], {
      cwd: work,
      stdio: 'pipe',
      env: { ...process.env, DPKG_DEB_COMPRESSOR_TYPE: 'gzip' },
    });
    const built = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (built === undefined) throw new Error('dpkg-repack nodejs made no .deb');
    renameSync(join(work, built), deb);
  } finally {
    removeTree(work);
  }
  return deb;
}

function mountPointsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4]?.replace(/\\040/g, ' '))
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)));
}

export class DebianRoot {
  private readonly mounts: string[] = [];
  private readonly children = new Set<ChildProcess>();

  /** If the worker exits without after.always (ava's timeout), the host's /dev must not stay bound in. */
  private readonly onExit = (): void => {
    for (const pid of this.processesInside()) killPid(pid);
    for (const target of [...this.mounts].reverse()) execFileSync('umount', ['-l', target], { stdio: 'ignore' });
  };

  private constructor(readonly dir: string) {
    process.once('exit', this.onExit);
  }

  /** A copy of today's pristine root with /proc, /sys, /dev (loop devices too) and an apt cache mounted. */
  static async create(pristine: string): Promise<DebianRoot> {
    const dir = mkdtempSync('/var/tmp/shifter-debian-root-');
    const root = new DebianRoot(dir);
    try {
      execFileSync('cp', ['-a', `${pristine}/.`, dir]);
      mkdirSync(join(dir, '.oldroot'), { recursive: true });
      root.mount(['--bind', dir, dir], dir);
      root.mount(['-t', 'proc', 'proc', join(dir, 'proc')], join(dir, 'proc'));
      root.mount(['-t', 'sysfs', 'sysfs', join(dir, 'sys')], join(dir, 'sys'));
      root.mount(['--bind', '/dev', join(dir, 'dev')], join(dir, 'dev'));
      // Downloaded .debs kept across runs: the mirror is asked once per package version.
      const archives = join(CACHE, 'apt-archives');
      mkdirSync(join(archives, 'partial'), { recursive: true });
      root.mount(['--bind', archives, join(dir, 'var/cache/apt/archives')], join(dir, 'var/cache/apt/archives'));
      execFileSync('cp', ['/etc/resolv.conf', join(dir, 'etc/resolv.conf')]);
      // As in any chroot build: maintainer scripts (munge's) must not start daemons here.
      writeFileSync(join(dir, 'usr/sbin/policy-rc.d'), '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    } catch (e) {
      await root.destroy();
      throw e;
    }
    return root;
  }

  private mount(args: string[], target: string): void {
    execFileSync('mount', args);
    this.mounts.push(target);
  }

  /** Runs a command inside the root and waits for it. */
  run(command: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Result> {
    return new Promise((resolve) => {
      const child = execFile(
        ENTER,
        [this.dir, 'env', '-i', ...envList(opts.env), ...command],
        { maxBuffer: 64 << 20, timeout: 600_000 },
        (err, stdout, stderr) => {
          this.children.delete(child);
          const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
          resolve({ code, stdout, stderr });
        },
      );
      this.children.add(child);
      child.stdin?.end(opts.input ?? '');
    });
  }

  /** Starts a long-running command inside the root (same pid as the command); its output is collected. */
  start(command: string[], env: Record<string, string> = {}): { child: ChildProcess; output: () => string } {
    const child = spawn(ENTER, [this.dir, 'env', '-i', ...envList(env), ...command], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    return { child, output: () => out };
  }

  /**
   * Pids of what runs inside: the commands started here and their descendants (shifterd's helper, a
   * container's processes), and anything chrooted into the root.
   */
  processesInside(): number[] {
    const parents = new Map<number, number>();
    const found = new Set<number>();
    for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      try {
        // The parent pid is the 2nd field after the command, which is in parentheses and may hold spaces.
        const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
        parents.set(Number(p), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
        if (readlinkSync(`/proc/${p}/root`) === this.dir) found.add(Number(p));
      } catch {
        // Exited while we looked.
      }
    }
    for (const child of this.children) if (child.pid !== undefined && parents.has(child.pid)) found.add(child.pid);
    for (let grew = true; grew;) {
      grew = false;
      for (const [pid, ppid] of parents) {
        if (found.has(ppid) && !found.has(pid)) {
          found.add(pid);
          grew = true;
        }
      }
    }
    return [...found];
  }

  /** Kills what runs inside by pid, unmounts what create() mounted, and removes the copy. */
  async destroy(): Promise<void> {
    process.off('exit', this.onExit);
    for (const child of this.children) if (child.pid !== undefined) killPid(child.pid);
    for (const pid of this.processesInside()) killPid(pid);
    const deadline = Date.now() + 10_000;
    while (this.processesInside().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const target of this.mounts.splice(0).reverse()) {
      try {
        execFileSync('umount', [target], { stdio: 'pipe' });
      } catch {
        execFileSync('umount', ['-l', target], { stdio: 'pipe' });
      }
    }
    // Never remove a tree that still has the host's /dev or an apt cache mounted in it.
    const left = mountPointsUnder(this.dir);
    if (left.length > 0) throw new Error(`still mounted, ${this.dir} kept: ${left.join(', ')}`);
    removeTree(this.dir);
  }
}

function envList(env: Record<string, string> = {}): string[] {
  const base = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', DEBIAN_FRONTEND: 'noninteractive' };
  return Object.entries({ ...base, ...env }).map(([k, v]) => `${k}=${v}`);
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone.
  }
}
