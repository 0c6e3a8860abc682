/**
 * Where environment creation and launch time goes (prints figures; not a test). Needs root.
 *   node dist/bench/native-env.js [rounds]
 * - createEnvironment from Node (total, and inside the helper), on a tiny busybox image;
 * - a warm launch (`shifter true` into an existing environment, through a minimal launch
 *   daemon) against `bwrap` starting the same squashfs image mounted on the host, both as an
 *   unprivileged user, measured with hyperfine.
 */
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { attachImage, createEnvironment, nativeDir, type EnvironmentSpec } from '../node-daemon/adapters/index.js';
import { ensureUser } from '../test/native/environment-run.js';
import { buildTestImage } from '../test/native/image-fixture.js';
import { startLaunchDaemon } from '../test/native/launch-daemon.js';

const rounds = Number(process.argv[2] ?? 50);

function stats(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))].toFixed(2);
  return `median ${q(0.5)} ms, p10 ${q(0.1)}, p90 ${q(0.9)}, min ${s[0].toFixed(2)}`;
}

const user = ensureUser('shiftertest1');
const dir = mkdtempSync(join(tmpdir(), 'shifter-bench-'));
chmodSync(dir, 0o755);
const imagePath = buildTestImage(dir, join(process.cwd(), 'test/native/fixtures'));
const image = await attachImage(imagePath);
const spec: EnvironmentSpec = {
  image,
  uid: user.uid,
  gid: user.gid,
  groups: [user.gid],
  scaffoldDirs: ['/etc'],
  mounts: [
    { kind: 'bind', source: '/dev', target: '/dev', readOnly: false, recursive: true, nodev: false },
    { kind: 'proc', target: '/proc' },
    { kind: 'bind', source: '/tmp', target: '/tmp', readOnly: false },
    { kind: 'file', target: '/etc/passwd', content: `${user.name}:x:${user.uid}:${user.gid}::/:/bin/sh\n` },
    { kind: 'file', target: '/etc/group', content: `${user.name}:x:${user.gid}:\n` },
    { kind: 'symlink', target: '/etc/mtab', linkTo: '/proc/mounts' },
  ],
};
const hostMount = join(dir, 'sqfs');
mkdirSync(hostMount);
try {
  (await createEnvironment(spec)).close();
  const total: number[] = [];
  const helper: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const env = await createEnvironment(spec);
    total.push(env.setupMs);
    helper.push(env.helperMs);
    env.close();
  }
  console.log(`createEnvironment x${rounds}: ${stats(total)}`);
  console.log(`  inside the helper:      ${stats(helper)}`);

  const env = await createEnvironment(spec);
  const daemon = await startLaunchDaemon(join(dir, 'd.sock'), async () => ({
    kind: 'exec',
    userNsFd: env.userNsFd,
    mntNsFd: env.mntNsFd,
    argv: ['/bin/true'],
    env: ['PATH=/bin'],
    cwd: '/',
    notice: '',
  }));
  execFileSync('mount', ['-t', 'squashfs', '-o', 'ro,nosuid,nodev', imagePath, hostMount]);
  const asUser = `setpriv --reuid=${user.uid} --regid=${user.gid} --clear-groups --`;
  // Asynchronously: the launch daemon answering the launcher lives in this process.
  const { stdout: out } = await promisify(execFile)('hyperfine', [
    '-N',
    '--warmup',
    '20',
    '--runs',
    String(Math.max(100, rounds)),
    '--export-json',
    join(dir, 'h.json'),
    '-n',
    'shifter (warm env)',
    `${asUser} env SHIFTERD_SOCKET=${daemon.socketPath} ${join(nativeDir(), 'shifter')} true`,
    '-n',
    'bwrap (same image)',
    `${asUser} bwrap --ro-bind ${hostMount} / --unshare-all /bin/true`,
    '-n',
    'baseline (setpriv + true)',
    `${asUser} /bin/true`,
  ]);
  const { results } = JSON.parse(execFileSync('cat', [join(dir, 'h.json')], { encoding: 'utf8' })) as {
    results: { command: string; median: number; min: number }[];
  };
  for (const r of results)
    console.log(
      `${r.command.padEnd(26)} median ${(r.median * 1000).toFixed(2)} ms, min ${(r.min * 1000).toFixed(2)} ms`,
    );
  if (process.env.BENCH_VERBOSE) console.log(out);
  await daemon.close();
  env.close();
} finally {
  try {
    execFileSync('umount', [hostMount], { stdio: 'ignore' });
  } catch {
    /* not mounted */
  }
  image.release();
  rmSync(dir, { recursive: true, force: true });
}
