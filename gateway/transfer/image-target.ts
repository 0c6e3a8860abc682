/**
 * Where a system's images go: its local imageDir, or a remote one over ssh (remote.ts). Either
 * way the image file is written before the meta, each under a temporary name renamed into place,
 * so "both files exist" means "the image is complete".
 */
import { writeFileAtomic } from '../../common/atomic-write.js';
import { asShifterError } from '../../common/errors.js';
import { diskFullError } from '../../common/disk-full.js';
import type { PlatformConfig } from '../config/imagemanager.js';
import { imageFiles, imageFilesComplete, transferFile } from './local.js';
import { putRemoteFile, putRemoteText, remoteImageComplete } from './remote.js';

export interface ImageTarget {
  /** `<id>.squashfs` and `<id>.meta` are both there. */
  complete(id: string): Promise<boolean>;
  /** Moves or copies the finished squashfs at `src` in as `<id>.squashfs`. */
  putImage(src: string, id: string): Promise<void>;
  /** Writes `<id>.meta`; called last. */
  putMeta(text: string, id: string): Promise<void>;
}

export function imageTarget(platform: PlatformConfig, signal?: AbortSignal): ImageTarget {
  if (platform.accesstype === 'remote') {
    return {
      complete: (id) => remoteImageComplete(platform, id, signal),
      putImage: (src, id) => putRemoteFile(platform, src, `${id}.squashfs`, signal),
      putMeta: (text, id) => putRemoteText(platform, text, `${id}.meta`, signal),
    };
  }
  const imageDirKey = `Platforms.${platform.name}.local.imageDir`;
  return {
    complete: (id) => imageFilesComplete(platform, id),
    putImage: (src, id) => transferFile(src, imageFiles(platform, id).image, imageDirKey),
    putMeta: async (text, id) => {
      const path = imageFiles(platform, id).meta;
      await writeFileAtomic(path, text, 0o600).catch((e: unknown) => {
        throw diskFullError(e, platform.imageDir, imageDirKey) ?? asShifterError(e, 'IO_ERROR', `cannot write ${path}`);
      });
    },
  };
}
