/**
 * A comparable description of a directory tree as the kernel shows it (lstat, no symlink
 * following): type, permission bits incl. setuid/setgid/sticky, owner, size, content hash,
 * symlink target, and which names share an inode (hard links).
 */
import { createHash } from 'node:crypto';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface NodeInfo {
  type: 'dir' | 'file' | 'symlink' | 'fifo' | 'other';
  mode: string;
  uid: number;
  gid: number;
  size?: number;
  sha256?: string;
  target?: string;
  mtime?: number;
  /** Other names of the same inode, sorted (files only, when there are any). */
  links?: string[];
}

export async function snapshotTree(root: string, opts: { mtimes?: boolean } = {}): Promise<Record<string, NodeInfo>> {
  const out: Record<string, NodeInfo> = {};
  const inodes = new Map<string, string[]>();
  const walk = async (rel: string) => {
    const abs = rel === '' ? root : join(root, rel);
    const st = await lstat(abs);
    const type: NodeInfo['type'] = st.isDirectory()
      ? 'dir'
      : st.isFile()
        ? 'file'
        : st.isSymbolicLink()
          ? 'symlink'
          : st.isFIFO()
            ? 'fifo'
            : 'other';
    const info: NodeInfo = { type, mode: (st.mode & 0o7777).toString(8), uid: st.uid, gid: st.gid };
    if (opts.mtimes && type !== 'dir' && type !== 'symlink') info.mtime = Math.floor(st.mtimeMs / 1000);
    if (type === 'file') {
      info.size = st.size;
      info.sha256 = createHash('sha256')
        .update(await readFile(abs))
        .digest('hex');
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
    }
    if (type === 'symlink') info.target = await readlink(abs);
    out[rel === '' ? '.' : rel] = info;
    if (type === 'dir') {
      for (const name of (await readdir(abs)).sort()) await walk(rel === '' ? name : `${rel}/${name}`);
    }
  };
  await walk('');
  for (const names of inodes.values()) {
    if (names.length < 2) continue;
    for (const n of names) out[n].links = names.filter((x) => x !== n).sort();
  }
  return out;
}
