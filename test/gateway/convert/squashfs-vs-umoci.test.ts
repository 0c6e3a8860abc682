/**
 * The central property: the squashfs image we build from an OCI image equals, entry for entry,
 * the root filesystem `umoci unpack` makes from the same layout (type, permission bits with
 * setuid/setgid/sticky, owner, size, content, symlink target, hard-link identity, mtime).
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { convertLayersToSquashfs } from '../../../gateway/convert/index.js';
import {
  buildImage,
  umociUnpack,
  file,
  dir,
  symlink,
  hardlink,
  whiteout,
  opaque,
  type LayerSpec,
  type LayerCompression,
} from '../../helpers/oci-image.js';
import { snapshotTree } from './tree-snapshot.js';

const run = promisify(execFile);
const log = pino({ level: 'silent' });
const mounts: string[] = [];
let work = '';

test.before(async () => {
  work = await mkdtemp(join(tmpdir(), 'sqfs-vs-umoci-'));
});
test.after.always(async () => {
  for (const m of mounts) await run('umount', [m]).catch(() => undefined);
  if (work) await rm(work, { recursive: true, force: true });
});

async function mountImage(image: string): Promise<string> {
  const mnt = await mkdtemp(join(work, 'mnt-'));
  await run('mount', ['-t', 'squashfs', '-o', 'loop,ro,nodev,nosuid', image, mnt]);
  mounts.push(mnt);
  return mnt;
}

const long = 'ĺőñğ-ñåmé-' + '😀'.repeat(20) + '-' + 'x'.repeat(60);
const deep = Array.from({ length: 8 }, (_, i) => `level-${i}-${'d'.repeat(30)}`).join('/');

function layers(compression: [LayerCompression, LayerCompression, LayerCompression]): LayerSpec[] {
  return [
    {
      compression: compression[0],
      entries: [
        dir('./', { mode: 0o755 }),
        dir('etc'),
        file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
        dir('usr'),
        dir('usr/bin'),
        file('usr/bin/su', 'setuid binary', { mode: 0o4755 }),
        file('usr/bin/wall', 'setgid binary', { mode: 0o2755, gid: 5 }),
        hardlink('usr/bin/su-link', 'usr/bin/su', { mode: 0o4755 }),
        dir('tmp', { mode: 0o1777 }),
        dir('opt'),
        dir('opt/keep'),
        file('opt/keep/a', 'a'),
        file('opt/keep/b', 'b'),
        dir('opt/gone'),
        file('opt/gone/x', 'x'),
        dir('var'),
        dir('var/lib'),
        file('var/lib/old.txt', 'old'),
        file('var/lib/stays.txt', 'stays'),
        dir('data'),
        file('data/file-to-dir', 'i was a file'),
        dir('data/dir-to-file'),
        file('data/dir-to-file/child', 'child'),
        dir('data/dir-to-file/sub'),
        dir('h'),
        file('h/orig', 'original content'),
        hardlink('h/link1', 'h/orig'),
        symlink('bin', 'usr/bin'),
        symlink('abs', '/etc/passwd'),
        symlink('dangling', 'nowhere/at/all'),
        dir('home'),
        dir('home/user', { uid: 1000, gid: 1000, mode: 0o700 }),
        file('home/user/.profile', 'export A=1\n', { uid: 1000, gid: 1000, mode: 0o600 }),
        file('home/big-ids', 'ids', { uid: 300000, gid: 400000 }),
        dir('run'),
        { type: 'fifo', path: 'run/fifo', mode: 0o620 },
        dir('ünïcødé'),
        file(`ünïcødé/${long}`, 'long unicode name'),
        dir('deep'),
        file(`deep/${deep}/leaf-${'l'.repeat(80)}`, 'deep leaf'),
      ],
    },
    {
      compression: compression[1],
      entries: [
        whiteout('var/lib/old.txt'),
        whiteout('opt/gone'),
        dir('opt/keep', { mode: 0o700 }),
        opaque('opt/keep'),
        file('opt/keep/new', 'new'),
        dir('data/file-to-dir'),
        file('data/file-to-dir/inner', 'inner'),
        file('data/dir-to-file', 'i was a directory'),
        hardlink('etc/passwd-link', 'etc/passwd'),
        hardlink('h/link2', 'h/orig'),
        file('usr/bin/tool', 'tool v1', { mode: 0o755 }),
      ],
    },
    {
      compression: compression[2],
      entries: [
        file('h/orig', 'replaced content'),
        whiteout('usr/bin/su'),
        dir('etc', { mode: 0o750 }),
        file(`ünïcødé/${long}-2`, 'second'),
        file('usr/bin/tool', 'tool v2', { mode: 0o4711, uid: 2, gid: 3 }),
        hardlink('usr/bin/tool-alias', 'usr/bin/tool'),
      ],
    },
  ];
}

test('the squashfs equals umoci unpack of the same image, entry for entry', async (t) => {
  const reference = await buildImage(join(work, 'ref'), { layers: layers(['gzip', 'gzip', 'gzip']) });
  const rootfs = await umociUnpack(reference.layoutDir, reference.tag, join(work, 'bundle'));
  const expected = await snapshotTree(rootfs, { mtimes: true });

  for (const mix of [
    ['gzip', 'zstd', 'none'],
    ['zstd', 'none', 'gzip'],
  ] as const) {
    const image = await buildImage(join(work, `img-${mix.join('-')}`), { layers: layers([...mix]) });
    const out = join(work, `${mix.join('-')}.squashfs`);
    const report = await convertLayersToSquashfs(image.layers, out, { log });
    t.deepEqual(report.dropped, [], `nothing dropped (${mix.join(', ')})`);
    const actual = await snapshotTree(await mountImage(out), { mtimes: true });
    t.deepEqual(actual, expected, `layers ${mix.join(', ')}`);
    t.true(report.bytes > 0);
    t.is(report.entries, Object.keys(expected).length - 1 - implicitDirs(expected), 'entries counted');
  }
  t.deepEqual(
    (await readdir(work)).filter((n) => n.startsWith('.tmp-')),
    [],
    'no temporary file left',
  );
});

/** The parents of the deep path exist only implicitly: no tar entry is written for them. */
function implicitDirs(expected: Record<string, unknown>): number {
  return Object.keys(expected)
    .filter((p) => p.startsWith('deep/level-'))
    .filter((p) => !p.includes('leaf-')).length;
}

test('a hard link whose base-layer target is whited out still carries the content', async (t) => {
  const image = await buildImage(join(work, 'relink'), {
    layers: [
      {
        entries: [
          dir('b'),
          file('b/x', 'payload', { mode: 0o640, uid: 7 }),
          hardlink('b/y', 'b/x'),
          hardlink('b/z', 'b/x'),
        ],
      },
      { entries: [whiteout('b/x')] },
    ],
  });
  const rootfs = await umociUnpack(image.layoutDir, image.tag, join(work, 'bundle-relink'));
  const out = join(work, 'relink.squashfs');
  await convertLayersToSquashfs(image.layers, out, { log });
  const actual = await snapshotTree(await mountImage(out), { mtimes: true });
  t.deepEqual(actual, await snapshotTree(rootfs, { mtimes: true }));
  t.is(actual['b/y']?.sha256, actual['b/z']?.sha256);
  t.deepEqual(actual['b/y']?.links, ['b/z']);
});
