import { ShifterError } from '../../common/errors.js';
import { loadAddon } from '../../common/native-addon.js';
import { runHelper } from './helper-process.js';
import type { LocalRootMount } from './image-mount.js';

export interface LocalRootUser {
  uid: number;
  gid: number;
  groups: readonly number[];
}

const ANSWER = /^dev=(\d+:\d+) ino=(\d+)$/;

/**
 * Opens a `local:` image directory with the user's credentials (the helper refuses a tree the
 * user cannot read and search, and any symlink on the path) and returns its detached clone.
 */
export async function attachLocal(path: string, user: LocalRootUser): Promise<LocalRootMount> {
  if (!path.startsWith('/') || /[\0\n]/.test(path))
    throw new ShifterError('BAD_ARGUMENT', `local image path "${path}" must be an absolute directory`);
  const groups = user.groups.length === 0 ? '-' : user.groups.join(',');
  const { text, fds } = await runHelper(`attach-local ${user.uid} ${user.gid} ${groups} ${path}`, null, [], 1);
  const addon = loadAddon();
  let fd = fds[0];
  const m = ANSWER.exec(text);
  if (m === null) {
    addon.closeFd(fd);
    throw new ShifterError('INTERNAL', `shifter-nshelper attach-local answered "${text}"`);
  }
  return {
    kind: 'local',
    path,
    device: m[1],
    inode: m[2],
    get fd() {
      return fd;
    },
    release() {
      if (fd < 0) return;
      const f = fd;
      fd = -1;
      addon.closeFd(f);
    },
  };
}
