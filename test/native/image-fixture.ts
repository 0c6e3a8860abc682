/**
 * A tiny squashfs image built from the host's static busybox, with the hostile content a
 * container runtime must neutralize: a setuid-root binary printing its uids, a block device node, a symlink
 * `evil -> /etc`, `evil-tmp -> /tmp`, a non-executable script; and a merged-/usr `lib -> usr/lib`.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const APPLETS = ['sh', 'cat', 'id', 'ls', 'echo', 'true', 'false', 'sleep', 'touch', 'umount', 'mount', 'stat', 'pwd'];

/** @param fixtures the directory holding showid.c */
export function buildTestImage(dir: string, fixtures: string): string {
  const root = join(dir, 'rootfs');
  for (const d of ['bin', 'etc', 'home', 'var/tmp', 'usr/bin', 'usr/lib'])
    mkdirSync(join(root, d), { recursive: true });
  copyFileSync('/usr/bin/busybox', join(root, 'bin/busybox'));
  chmodSync(join(root, 'bin/busybox'), 0o755);
  for (const a of APPLETS) symlinkSync('busybox', join(root, 'bin', a));
  execFileSync('gcc', ['-static', '-O2', '-o', join(root, 'usr/bin/showid'), join(fixtures, 'showid.c')]);
  chmodSync(join(root, 'usr/bin/showid'), 0o4755);
  execFileSync('mknod', [join(root, 'home/evildev'), 'b', '7', '0']);
  chmodSync(join(root, 'home/evildev'), 0o666);
  symlinkSync('/etc', join(root, 'evil'));
  symlinkSync('/tmp', join(root, 'evil-tmp'));
  // merged /usr: /lib is a relative link into /usr
  symlinkSync('usr/lib', join(root, 'lib'));
  writeFileSync(join(root, 'usr/lib/libmarker.so'), 'image library\n');
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:image:/root:/bin/sh\n');
  writeFileSync(join(root, 'etc/image-only'), 'from the image\n');
  writeFileSync(join(root, 'bin/not-executable'), '#!/bin/sh\necho never\n', { mode: 0o644 });
  const image = join(dir, 'image.sqfs');
  execFileSync('mksquashfs', [root, image, '-quiet', '-noappend', '-comp', 'gzip'], { stdio: 'ignore' });
  return image;
}
