/**
 * N "nodes" on one machine, for the many-nodes tests and bench (issue 12). Each node is a network
 * namespace with a veth into one bridge in the root namespace (one /24: the bridge is .1, node i is
 * .(i+2), so 64 nodes and more fit) and its own shifterd (udiRoot.conf, launch and admin sockets,
 * lazy cache directory, FUSE server), started inside the node's network namespace only:
 * `nsenter --net`, not `ip netns exec`, which also unshares the mount namespace and would hide the
 * node's FUSE and squashfs mounts from the launches and from cleanup. What the nodes share (gateway,
 * nginx caches, munged) runs in the root namespace and listens on `cluster.hostAddress`.
 *
 * Everything a run makes carries its prefix (`shmn` + 4 hex digits) and is recorded in a state file
 * under STATE_DIR before it is made, so `reapLeftovers()` removes what a crashed run left: the
 * processes in its namespaces, mounts and loop devices under its directory, namespaces, links.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO, LAUNCHER } from '../node-daemon/runtime-fixture.js';

const run = promisify(execFile);

export const STATE_DIR = '/run/shifter-many-nodes';
const RUN_NAME = /^shmn[0-9a-f]{4}/;
const SHIFTERD = join(REPO, 'dist', 'node-daemon', 'main.js');
const CACHE_CLI = join(REPO, 'dist', 'node-daemon', 'lazy', 'cache-cli.js');

export interface ClusterNode {
  readonly index: number;
  /** The network namespace (`/run/netns/<netns>`). */
  readonly netns: string;
  readonly address: string;
  readonly dir: string;
  readonly socket: string;
  readonly adminSocket: string;
  readonly cacheDir: string;
}

export interface LaunchResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Per-link shaping on the root side of each veth (what a node receives). */
export interface LinkShape {
  /** tbf rate limit, Mbit/s. */
  rateMbit?: number;
  /** netem one-way delay, ms (needs sch_netem in the kernel; this machine's kernel lacks it). */
  delayMs?: number;
}

interface RunState {
  pid: number;
  run: string;
  dir: string;
  netns: string[];
  bridge: string;
}

function stateFile(runName: string): string {
  return join(STATE_DIR, `${runName}.json`);
}

function writeState(state: RunState): void {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  const tmp = `${stateFile(state.run)}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  writeFileSync(fd, JSON.stringify(state));
  closeSync(fd);
  renameSync(tmp, stateFile(state.run));
}

async function ip(args: string[]): Promise<void> {
  try {
    await run('ip', args);
  } catch (e) {
    throw new Error(`ip ${args.join(' ')} failed: ${(e as { stderr?: string }).stderr ?? String(e)}`);
  }
}

/** `ip -batch` from lines: one process for many commands. */
async function ipBatch(lines: string[], netns?: string): Promise<void> {
  if (lines.length === 0) return;
  const file = join(tmpdir(), `shmn-ip-${process.pid}-${randomBytes(4).toString('hex')}`);
  writeFileSync(file, lines.join('\n') + '\n');
  try {
    await ip([...(netns ? ['-n', netns] : []), '-batch', file]);
  } finally {
    rmSync(file, { force: true });
  }
}

/** The inode of a named network namespace: what `/proc/<pid>/ns/net` of its processes points to. */
export function netnsInode(netns: string): number | undefined {
  try {
    return statSync(`/run/netns/${netns}`).ino;
  } catch {
    return undefined;
  }
}

/** Pids of processes whose network namespace is one of `inodes`. */
export function processesIn(inodes: Set<number>): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${entry}/ns/net`));
      if (m && inodes.has(Number(m[1]))) found.push(Number(entry));
    } catch {
      // gone meanwhile, or a kernel thread
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Mount points under `dir` (deepest first), from the root mount namespace's mountinfo. */
function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
}

/** Loop devices whose backing file is under `dir`. */
async function loopsUnder(dir: string): Promise<string[]> {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout
    .split('\n')
    .map((l) => /^(\S+)\s+(.*)$/.exec(l.trim()))
    .flatMap((m) => (m && (m[2] === dir || m[2].startsWith(`${dir}/`)) ? [m[1]] : []));
}

async function namespacesNamed(run_: string): Promise<string[]> {
  return readdirSafe('/run/netns').filter((n) => n.startsWith(run_));
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

async function linksNamed(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['-o', 'link', 'show']);
  return stdout
    .split('\n')
    .map((l) => /^\d+: ([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined && n.startsWith(prefix));
}

/**
 * Everything of run `runName` (its files under `dir`, its namespaces of `inodes`) still on the
 * machine, one line each: empty when nothing is left.
 */
export async function remains(runName: string, dir: string, inodes: Set<number>): Promise<string[]> {
  const left: string[] = [];
  for (const n of await namespacesNamed(runName)) left.push(`network namespace ${n}`);
  for (const l of await linksNamed(runName)) left.push(`link ${l}`);
  for (const m of mountsUnder(dir)) left.push(`mount ${m}`);
  for (const d of await loopsUnder(dir)) left.push(`loop device ${d}`);
  for (const p of processesIn(inodes)) left.push(`process ${p} in a node's network namespace`);
  if (existsSync(dir)) left.push(`directory ${dir}`);
  if (existsSync(stateFile(runName))) left.push(`state file ${stateFile(runName)}`);
  return left;
}

/** Removes all that run `state` made; safe to repeat, and for a run that crashed half way. */
async function teardown(state: RunState): Promise<void> {
  const names = new Set([...state.netns, ...(await namespacesNamed(state.run))]);
  const inodes = new Set([...names].flatMap((n) => netnsInode(n) ?? []));
  for (let round = 0; round < 100; round++) {
    const pids = processesIn(inodes);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const m of mountsUnder(state.dir)) await run('umount', ['--lazy', m]).catch(() => undefined);
  for (const d of await loopsUnder(state.dir)) await run('losetup', ['--detach', d]).catch(() => undefined);
  for (const n of names) await ip(['netns', 'delete', n]).catch(() => undefined);
  for (const l of await linksNamed(state.run)) await ip(['link', 'delete', l]).catch(() => undefined);
  rmSync(state.dir, { recursive: true, force: true });
  rmSync(stateFile(state.run), { force: true });
}

/**
 * Removes what runs whose process is gone left behind (a crashed test or bench), and prefixed
 * namespaces and links no state file claims. Runs of live processes are left alone.
 */
export async function reapLeftovers(): Promise<string[]> {
  const reaped: string[] = [];
  const live = new Set<string>();
  for (const f of readdirSafe(STATE_DIR).filter((f) => f.endsWith('.json'))) {
    const state = JSON.parse(readFileSync(join(STATE_DIR, f), 'utf8')) as RunState;
    if (alive(state.pid)) {
      live.add(state.run);
      continue;
    }
    await teardown(state);
    reaped.push(state.run);
  }
  const orphans = new Set(
    [...(await namespacesNamed('shmn')), ...(await linksNamed('shmn'))]
      .map((n) => RUN_NAME.exec(n)?.[0])
      .filter((r): r is string => r !== undefined && !live.has(r)),
  );
  for (const r of orphans) {
    await teardown({ pid: 0, run: r, dir: join(tmpdir(), `${r}-none`), netns: [], bridge: `${r}b` });
    reaped.push(r);
  }
  return reaped;
}

function freeSubnet(): Promise<string> {
  return run('ip', ['-4', '-o', 'addr', 'show']).then(({ stdout }) => {
    const start = randomBytes(1)[0];
    for (let k = 0; k < 256; k++) {
      const third = (start + k) % 256;
      if (!stdout.includes(` 10.231.${third}.`)) return `10.231.${third}`;
    }
    throw new Error('no free 10.231.x.0/24 subnet for the cluster bridge');
  });
}

export class Cluster {
  readonly nodes: ClusterNode[];
  private readonly daemons = new Map<number, ChildProcess>();
  private inodes = new Set<number>();

  private constructor(
    private readonly state: RunState,
    readonly hostAddress: string,
    nodes: ClusterNode[],
  ) {
    this.nodes = nodes;
  }

  get dir(): string {
    return this.state.dir;
  }

  /** The run's name: the prefix of its namespaces and links. */
  get name(): string {
    return this.state.run;
  }

  /** Makes the bridge and `count` namespaces with their veths (no daemons yet). */
  static async create(count: number, shape: LinkShape = {}): Promise<Cluster> {
    if (process.getuid?.() !== 0) throw new Error('the many-nodes cluster needs root (network namespaces)');
    await reapLeftovers();
    const runName = `shmn${randomBytes(2).toString('hex')}`;
    const net = await freeSubnet();
    const dir = join(tmpdir(), runName);
    mkdirSync(dir, { mode: 0o755 });
    const nodes: ClusterNode[] = Array.from({ length: count }, (_, i) => {
      const nodeDir = join(dir, `n${i}`);
      return {
        index: i,
        netns: `${runName}-${i}`,
        address: `${net}.${i + 2}`,
        dir: nodeDir,
        socket: join(nodeDir, 'run', 'shifterd.sock'),
        adminSocket: join(nodeDir, 'run', 'shifterd-admin.sock'),
        cacheDir: join(nodeDir, 'lazycache'),
      };
    });
    const state: RunState = {
      pid: process.pid,
      run: runName,
      dir,
      netns: nodes.map((n) => n.netns),
      bridge: `${runName}b`,
    };
    writeState(state);
    const cluster = new Cluster(state, `${net}.1`, nodes);
    try {
      await ipBatch([
        `link add ${state.bridge} type bridge`,
        `addr add ${net}.1/24 dev ${state.bridge}`,
        `link set ${state.bridge} up`,
        ...nodes.flatMap((n) => [
          `netns add ${n.netns}`,
          `link add ${runName}h${n.index} type veth peer name ${runName}n${n.index} netns ${n.netns}`,
          `link set ${runName}h${n.index} master ${state.bridge} up`,
        ]),
      ]);
      for (const n of nodes) {
        await ipBatch(
          [
            `link set lo up`,
            `addr add ${n.address}/24 dev ${runName}n${n.index}`,
            `link set ${runName}n${n.index} up`,
            // Any address of the root namespace (another run's bridge too) is reached through the bridge.
            `route add default via ${net}.1`,
          ],
          n.netns,
        );
        await shapeLink(`${runName}h${n.index}`, shape);
        for (const d of ['run', 'lazycache', 'images']) mkdirSync(join(n.dir, d), { recursive: true, mode: 0o755 });
        chmodSync(n.dir, 0o755);
      }
      cluster.inodes = new Set(nodes.flatMap((n) => netnsInode(n.netns) ?? []));
    } catch (e) {
      await teardown(state);
      throw e;
    }
    return cluster;
  }

  /**
   * Starts every node's shifterd in its network namespace with `config(node)`'s udiRoot.conf lines
   * (imageGateway, system, lazy keys...) after the harness's own (imagePath, populateEtcDynamically).
   */
  async startDaemons(config: (node: ClusterNode) => string[]): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.startDaemon(n, config(n))));
  }

  async startDaemon(node: ClusterNode, lines: string[]): Promise<void> {
    const conf = join(node.dir, 'udiRoot.conf');
    writeFileSync(conf, [`imagePath=${join(node.dir, 'images')}`, 'populateEtcDynamically=1', ...lines, ''].join('\n'));
    chmodSync(conf, 0o644);
    const logPath = join(node.dir, 'shifterd.log');
    const log = openSync(logPath, 'a');
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${node.netns}`,
        '--',
        process.execPath,
        SHIFTERD,
        '--config',
        conf,
        '--socket',
        node.socket,
        '--admin-socket',
        node.adminSocket,
      ],
      { stdio: ['ignore', log, log], env: { ...process.env, SHIFTER_LOG_LEVEL: 'info' } },
    );
    closeSync(log);
    this.daemons.set(node.index, child);
    const deadline = Date.now() + 120_000;
    // The admin socket (staging, status) may come up just after the launch socket.
    while (!readFileSync(logPath, 'utf8').includes('shifterd ready') || !existsSync(node.adminSocket)) {
      if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) {
        throw new Error(`shifterd of node ${node.index} did not start:\n${this.log(node)}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops one node's shifterd by its pid (SIGTERM; SIGKILL after 60 s). */
  async stopDaemon(node: ClusterNode): Promise<void> {
    const child = this.daemons.get(node.index);
    this.daemons.delete(node.index);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
  }

  /** Cold nodes: each shifterd stopped (it leaves no mount), its chunk store emptied, started with `config`. */
  async restartCold(nodes: ClusterNode[], config: (node: ClusterNode) => string[]): Promise<void> {
    await Promise.all(nodes.map((n) => this.stopDaemon(n)));
    for (const n of nodes) {
      const mounted = mountsUnder(n.cacheDir);
      if (mounted.length > 0)
        throw new Error(`node ${n.index}: ${mounted.join(', ')} still mounted after shifterd stopped`);
      rmSync(n.cacheDir, { recursive: true, force: true });
      mkdirSync(n.cacheDir, { mode: 0o755 });
    }
    await Promise.all(nodes.map((n) => this.startDaemon(n, config(n))));
  }

  log(node: ClusterNode): string {
    try {
      return readFileSync(join(node.dir, 'shifterd.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** Runs the real `shifter` as `user` (uid, gid) in the node's network namespace against its shifterd. */
  launch(node: ClusterNode, user: { uid: number; gid: number }, argv: string[]): Promise<LaunchResult> {
    const started = performance.now();
    const child = spawn(
      'nsenter',
      [
        `--net=/run/netns/${node.netns}`,
        '--',
        'setpriv',
        `--reuid=${user.uid}`,
        `--regid=${user.gid}`,
        '--init-groups',
        '--',
        LAUNCHER,
        ...argv,
      ],
      {
        cwd: '/',
        env: { PATH: '/usr/bin:/bin', HOME: '/nonexistent', LANG: 'C.UTF-8', SHIFTERD_SOCKET: node.socket },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    return new Promise((resolve) =>
      child.once('close', (code) => resolve({ code, stdout, stderr, ms: performance.now() - started })),
    );
  }

  /**
   * `shifterd-cache stage IMAGE` on the node: every chunk of the image fetched before the job; with
   * `profile`, `stage --profile`: the superblock, tables and the chunks the recorded profile names.
   */
  async stage(node: ClusterNode, image: string, what: 'all' | 'profile' = 'all'): Promise<void> {
    const args = ['--admin-socket', node.adminSocket, 'stage', ...(what === 'profile' ? ['--profile'] : []), image];
    try {
      await run(process.execPath, [CACHE_CLI, ...args]);
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string };
      throw new Error(`stage ${image} on node ${node.index} failed: ${err.stderr ?? ''}${err.stdout ?? String(e)}`);
    }
  }

  /** Resident memory of the node's shifterd and its children (the FUSE server), bytes. */
  memory(node: ClusterNode): number {
    const root = this.daemons.get(node.index)?.pid;
    if (root === undefined) return 0;
    let total = 0;
    const visit = (pid: number): void => {
      try {
        const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
        total += Number(rss?.[1] ?? 0) * 1024;
        for (const task of readdirSync(`/proc/${pid}/task`)) {
          const kids = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
          for (const k of kids ? kids.split(' ') : []) visit(Number(k));
        }
      } catch {
        // exited meanwhile
      }
    };
    visit(root);
    return total;
  }

  /** Stops every shifterd, then removes all the run made. */
  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => this.stopDaemon(n)));
    await teardown(this.state);
  }

  /** What of this run is still on the machine (after destroy(): nothing). */
  leftovers(): Promise<string[]> {
    return remains(this.state.run, this.state.dir, this.inodes);
  }
}

async function shapeLink(dev: string, shape: LinkShape): Promise<void> {
  if (shape.delayMs !== undefined) {
    try {
      await run('tc', ['qdisc', 'add', 'dev', dev, 'root', 'handle', '1:', 'netem', 'delay', `${shape.delayMs}ms`]);
    } catch (e) {
      const why = (e as { stderr?: string }).stderr?.trim() ?? String(e);
      throw new Error(`link delay needs the kernel's netem qdisc (sch_netem), which tc refused: ${why}`);
    }
  }
  if (shape.rateMbit !== undefined) {
    const parent = shape.delayMs !== undefined ? ['parent', '1:'] : ['root'];
    await run('tc', [
      'qdisc',
      'add',
      'dev',
      dev,
      ...parent,
      'tbf',
      'rate',
      `${shape.rateMbit}mbit`,
      'burst',
      '64kb',
      'latency',
      '400ms',
    ]);
  }
}
