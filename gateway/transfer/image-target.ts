/**
 * Where a system's images go: its local imageDir, or a remote one over ssh (remote.ts). Either
 * way the image file is written before the meta, each under a temporary name renamed into place,
 * so "both files exist" means "the image is complete". Only a local imageDir gets the chunk index
 * (`<id>.chunks`, written before the meta): the lazy image cache's chunks are served from the
 * gateway's own copy, which a remote system does not leave here.
 */
import { writeFileAtomic } from '../../common/atomic-write.js';
import { asShifterError } from '../../common/errors.js';
import { diskFullError } from '../../common/disk-full.js';
import type { ImageId } from '../../common/image-descriptor.js';
import { rm } from 'node:fs/promises';
import { profilePath } from '../chunks/profile-file.js';
import { ensureChunkIndex, writeChunkIndex, type StoredChunkIndex } from '../chunks/index-file.js';
import type { PlatformConfig } from '../config/imagemanager.js';
import { imageFiles, imageFilesComplete, transferFile } from './local.js';
import { putRemoteFile, putRemoteText, remoteImageComplete, removeRemote } from './remote.js';

export interface ImageTarget {
  /** `<id>.squashfs` and `<id>.meta` are both there. */
  complete(id: string): Promise<boolean>;
  /** Moves or copies the finished squashfs at `src` in as `<id>.squashfs`. */
  putImage(src: string, id: string): Promise<void>;
  /** Writes `<id>.meta`; called last. */
  putMeta(text: string, id: string): Promise<void>;
  /** This gateway can serve the image's chunks to nodes (a local imageDir). */
  readonly servesChunks: boolean;
  /** Writes `<id>.chunks`; before the meta. */
  putChunkIndex(index: StoredChunkIndex, id: ImageId): Promise<void>;
  /** The digest of a complete image's chunk index, made now if it predates indexes; none when not served. */
  existingChunkIndex(id: ImageId): Promise<string | undefined>;
  /** Expiry: the meta first (so nothing passes for ready), then the image and what describes it. */
  remove(id: string): Promise<void>;
}

export function imageTarget(platform: PlatformConfig, signal?: AbortSignal): ImageTarget {
  if (platform.accesstype === 'remote') {
    return {
      complete: (id) => remoteImageComplete(platform, id, signal),
      putImage: (src, id) => putRemoteFile(platform, src, `${id}.squashfs`, signal),
      putMeta: (text, id) => putRemoteText(platform, text, `${id}.meta`, signal),
      servesChunks: false,
      putChunkIndex: () => Promise.resolve(),
      existingChunkIndex: () => Promise.resolve(undefined),
      remove: (id) => removeRemote(platform, id, signal),
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
    servesChunks: true,
    putChunkIndex: async (index, id) => {
      const path = imageFiles(platform, id).chunks;
      await writeChunkIndex(path, index).catch((e: unknown) => {
        throw diskFullError(e, platform.imageDir, imageDirKey) ?? asShifterError(e, 'IO_ERROR', `cannot write ${path}`);
      });
    },
    existingChunkIndex: async (id) => (await ensureChunkIndex(platform.imageDir, id)).digest,
    remove: async (id) => {
      const files = imageFiles(platform, id);
      for (const path of [files.meta, files.image, files.chunks, profilePath(platform.imageDir, id)]) {
        await rm(path, { force: true });
      }
    },
  };
}
