/**
 * perNodeCache volumes on real loop devices, used by a real unprivileged user: a private,
 * writable, nosuid filesystem owned by the user whose backing file is unlinked at once and
 * whose loop device goes away with the environment's last process. Needs root.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  attachImage,
  createEnvironment,
  type EnvironmentSpec,
  type ImageMount,
  type PerNodeCacheMount,
} from '../../node-daemon/adapters/index.js';
import { ensureUser, runInside, type TestUser } from './environment-run.js';
import { buildTestImage } from './image-fixture.js';

let dir: string;
let backingDir: string;
let image: ImageMount;
let user: TestUser;

test.before(async () => {
  user = ensureUser('shiftertest1');
  dir = mkdtempSync(join(tmpdir(), 'shifter-pnc-'));
  chmodSync(dir, 0o755);
  backingDir = mkdtempSync(join(dir, 'backing-'));
  image = await attachImage(buildTestImage(dir, join(process.cwd(), 'test/native/fixtures')));
});

test.after.always(() => {
  image?.release();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function spec(cache: Partial<PerNodeCacheMount>): EnvironmentSpec {
  return {
    image,
    uid: user.uid,
    gid: user.gid,
    groups: [user.gid],
    scaffoldDirs: [],
    mounts: [
      { kind: 'proc', target: '/proc' },
      {
        kind: 'perNodeCache',
        target: '/cache',
        sizeBytes: 2 ** 30,
        fsType: 'xfs',
        backingDir,
        uid: user.uid,
        gid: user.gid,
        phase: 'user',
        ...cache,
      },
    ],
    perNodeCachePolicy: { sizeLimitBytes: 4 * 2 ** 30, allowedFsTypes: ['xfs', 'ext4'] },
  };
}

const loopBacking = (dev: string) => {
  const p = join('/sys/block', dev.replace('/dev/', ''), 'loop/backing_file');
  return existsSync(p) ? readFileSync(p, 'utf8').trim() : null;
};

async function waitFor(cond: () => boolean): Promise<boolean> {
  for (let i = 0; i < 150; i++) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

for (const fsType of ['xfs', 'ext4'] as const) {
  test.serial(
    `${fsType}: the user gets a writable nosuid cache of their own, freed with the environment's last process`,
    async (t) => {
      const env = await createEnvironment(spec({ fsType, blockSize: 4096 }));
      let sleeper: ReturnType<typeof spawn> | undefined;
      try {
        t.deepEqual(readdirSync(backingDir), []);
        const r = await runInside(
          env,
          [
            '/bin/sh',
            '-c',
            'echo data > /cache/f && cat /cache/f && stat -c "%u %a" /cache && cat /proc/self/mountinfo',
          ],
          user,
        );
        t.is(r.code, 0, r.stderr);
        const [data, owner, ...mountinfo] = r.stdout.split('\n');
        t.is(data, 'data');
        t.is(owner, `${user.uid} 755`);
        const line = mountinfo.find((l) => l.split(' ')[4] === '/cache');
        t.truthy(line);
        t.regex(line!, /\brw,nosuid,nodev\b/);
        t.regex(line!, new RegExp(` - ${fsType} /dev/loop\\d+ `));
        const dev = /(\/dev\/loop\d+)/.exec(line!.split(' - ')[1])![1];
        t.regex(
          loopBacking(dev)!,
          new RegExp(
            `^${backingDir}/perNodeCache_uid${user.uid}_gid${user.gid}_.+\\.${fsType}\\.\\w{6} \\(deleted\\)$`,
          ),
        );
        // A process still inside keeps the cache after the daemon dropped the environment.
        sleeper = spawn(
          'setpriv',
          [
            `--reuid=${user.uid}`,
            `--regid=${user.gid}`,
            '--clear-groups',
            '--',
            'nsenter',
            '--preserve-credentials',
            '--user=/proc/self/fd/3',
            '--mount=/proc/self/fd/4',
            '/bin/sleep',
            '30',
          ],
          {
            stdio: ['ignore', 'ignore', 'ignore', env.userNsFd, env.mntNsFd],
          },
        );
        await new Promise((r) => setTimeout(r, 200));
        env.close();
        await new Promise((r) => setTimeout(r, 200));
        t.not(loopBacking(dev), null);
        sleeper.kill('SIGKILL');
        t.true(await waitFor(() => loopBacking(dev) === null || !loopBacking(dev)!.startsWith(backingDir)));
        t.deepEqual(readdirSync(backingDir), []);
      } finally {
        sleeper?.kill('SIGKILL');
        env.close();
      }
    },
  );
}

test.serial("a cache mkfs cannot make fails with mkfs's own words and leaves no backing file", async (t) => {
  const err = await t.throwsAsync(createEnvironment(spec({ sizeBytes: 16 << 20 })));
  t.regex(err.message, /^shifter-nshelper: \/usr\/sbin\/mkfs\.xfs: exited with status 1 \(last stderr line: .+\)$/);
  t.deepEqual(readdirSync(backingDir), []);
});

test.serial('the site limits are enforced before anything is made', async (t) => {
  const big = await t.throwsAsync(createEnvironment(spec({ sizeBytes: 8 * 2 ** 30 })));
  t.is(
    big.message,
    "perNodeCache on /cache: size 8G is over this site's limit of 4G (perNodeCacheSizeLimit): ask for less",
  );
  const fs = await t.throwsAsync(
    createEnvironment({ ...spec({ fsType: 'ext4' }), perNodeCachePolicy: { allowedFsTypes: ['xfs'] } }),
  );
  t.is(
    fs.message,
    'perNodeCache on /cache: filesystem "ext4" is not allowed on this site (perNodeCacheAllowedFsType: xfs): use fs=xfs',
  );
  t.deepEqual(readdirSync(backingDir), []);
});
