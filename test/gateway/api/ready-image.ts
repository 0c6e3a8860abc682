/**
 * Puts an image on system `sys` of an in-process gateway the way a finished pull leaves it:
 * `<id>.squashfs` (here any bytes: the chunk routes serve a file's bytes whatever they hold), `<id>.meta`
 * and a READY record. No `<id>.chunks`: like an image converted before chunk indexes existed.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CompletedPull } from '../../../gateway/store/record.js';
import type { ApiUnderTest } from './api-under-test.js';

export const READY_META = 'FORMAT: squashfs\nENV: PATH=/bin\n';

/** What a finished public pull of `id` records, with no metadata of its own. */
export function readyPull(id: string): CompletedPull {
  return {
    id,
    format: 'squashfs',
    ENV: [],
    ENTRY: null,
    CMD: null,
    WORKDIR: null,
    LABELS: {},
    USER: null,
    userACL: [],
    groupACL: [],
    private: false,
    now: 1000,
    expiration: null,
    status_message: 'Image ready',
  };
}

export async function placeReadyImage(api: ApiUnderTest, id: string, bytes: Buffer): Promise<void> {
  const imageDir = api.config.platforms.sys.imageDir;
  await mkdir(imageDir, { recursive: true });
  await writeFile(join(imageDir, `${id}.squashfs`), bytes);
  await writeFile(join(imageDir, `${id}.meta`), READY_META);
  const p = await api.store.createPull({
    system: 'sys',
    itype: 'docker',
    pulltag: `img/${id.slice(0, 8)}:1`,
    requesterUid: null,
    userACL: [],
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: 1000,
  });
  await api.store.completePull(p.key, readyPull(id));
}
