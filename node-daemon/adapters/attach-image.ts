import { ShifterError } from '../../common/errors.js';
import { loadAddon } from '../../common/native-addon.js';
import { runHelper } from './helper-process.js';
import type { ImageMount } from './image-mount.js';

/** Attaches a squashfs image read-only on a loop device and returns its detached mount. */
export async function attachImage(path: string): Promise<ImageMount> {
  if (!path.startsWith('/') || path.includes('\0'))
    throw new ShifterError('BAD_ARGUMENT', `image path "${path}" must be absolute`);
  const { text, fds } = await runHelper(`attach-image ${path}`, null, [], 1);
  const addon = loadAddon();
  let fd = fds[0];
  return {
    kind: 'squashfs',
    path,
    loopDevice: text.replace(/^loop=/, ''),
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
