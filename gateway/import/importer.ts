/**
 * Direct import (upstream `doimport`, doc/import.md): an admin, or a user `ImportUsers` names,
 * registers a squashfs file that already lies on the gateway host as an image with a tag, access
 * lists and metadata. The request checks the file and answers at once (status HASHING); the copy
 * runs in the background: HASHING (the id is upstream's fasthash of the file) → TRANSFER (copied
 * into imageDir under a temporary name, fsynced, renamed; the `.meta` written last) → READY.
 * The fast hash samples the file, so it is not trusted alone: when `<id>.squashfs` already exists
 * its whole content must equal the imported file's, or the import fails (a crafted file cannot
 * take another image's id and replace it).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { commitFile, temporaryNameFor, writeFileAtomic } from '../../common/atomic-write.js';
import { diskFullError } from '../../common/disk-full.js';
import { asShifterError, describeError, isShifterError, ShifterError } from '../../common/errors.js';
import { formatImageMeta } from '../../common/image-meta.js';
import type { Logger } from '../../common/logger.js';
import type { Session } from '../auth/session.js';
import type { GatewayConfig, ImportUsers, PlatformConfig } from '../config/imagemanager.js';
import { imageFiles } from '../transfer/local.js';
import { expiryAfter } from '../expire/rules.js';
import type { ImageStore } from '../store/image-store.js';
import { accessAfterPull, pullGrant, type ImageRecord, type RecordKey } from '../store/record.js';
import { fastHash } from './fasthash.js';
import { openImageFile, type OpenedImageFile } from './image-file.js';

export interface ImportMetadata {
  env: string[];
  entrypoint: string[] | null;
  cmd: string[] | null;
  workdir: string | null;
  labels: Record<string, string>;
}

export interface ImportRequest {
  platform: PlatformConfig;
  itype: string;
  tag: string;
  filepath: string;
  userACL: number[];
  groupACL: number[];
  meta: ImportMetadata;
}

export interface ImporterDeps {
  config: GatewayConfig;
  store: ImageStore;
  log: Logger;
  withImageLock<T>(system: string, id: string, fn: () => Promise<T>): Promise<T>;
}

/** Throws unless `session` may import: an admin, or a user ImportUsers names (by name or uid). */
export function assertMayImport(importUsers: ImportUsers, session: Session): void {
  const who = session.identity;
  if (!who) {
    throw new ShifterError(
      'AUTH_FAILED',
      'importing an image needs an authenticated request (send a munge credential in the authentication header)',
    );
  }
  if (session.isAdmin || importUsers === 'all') return;
  if (importUsers !== 'none' && (importUsers.names.includes(who.user) || importUsers.uids.includes(who.uid))) return;
  throw new ShifterError(
    'PERMISSION_DENIED',
    importUsers === 'none'
      ? 'image import is disabled on this gateway (ImportUsers is "none"); ask an admin to import the file'
      : `${who.user} (uid ${who.uid}) is not in the gateway's ImportUsers; ask an admin to add you or to import the file`,
  );
}

/** sha256 of everything that flows through, passed on unchanged. */
function hashing(hash: ReturnType<typeof createHash>): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
}

async function sha256Of(stream: AsyncIterable<Buffer>): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

export class Importer {
  private readonly running = new Map<string, ImageRecord>();

  constructor(private readonly deps: ImporterDeps) {}

  private now(): number {
    return Date.now() / 1000;
  }

  /** Checks the request and the file, records the import (HASHING) and starts it. */
  async start(req: ImportRequest, session: Session): Promise<ImageRecord> {
    const { config, store, log } = this.deps;
    assertMayImport(config.importUsers, session);
    const system = req.platform.name;
    const slot = `${system}\0${req.itype}\0${req.tag}`;
    const inFlight = this.running.get(slot);
    if (inFlight) return inFlight;
    const file = await openImageFile(req.filepath, session.isAdmin ? null : session.identity, config.limits);
    let rec: ImageRecord;
    try {
      const created = await store.createPull({
        system,
        itype: req.itype,
        pulltag: req.tag,
        requesterUid: session.identity?.uid ?? null,
        userACL: req.userACL,
        groupACL: req.groupACL,
        format: 'squashfs',
        credentialed: false,
        now: this.now(),
      });
      const message = `Hashing ${file.path} (${file.size} bytes)`;
      await store.update(created.key, { status: 'HASHING', status_message: message, last_heartbeat: this.now() });
      rec = { ...created, status: 'HASHING', status_message: message };
    } catch (e) {
      await file.handle.close();
      throw e;
    }
    this.running.set(slot, rec);
    log.info({ system, tag: req.tag, file: file.path, by: session.identity?.user }, 'import started');
    void this.run(rec.key, req, file, session)
      .catch(async (e: unknown) => {
        const message = isShifterError(e) ? e.message : `internal error: ${describeError(e)}`;
        log.warn({ system, tag: req.tag, file: file.path }, `import failed: ${message}`);
        await store
          .update(rec.key, { status: 'FAILURE', status_message: message, last_pull: this.now(), progress: null })
          .catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot record the import failure'));
      })
      .finally(() => {
        this.running.delete(slot);
        return file.handle.close().catch(() => undefined);
      });
    return rec;
  }

  private async run(key: RecordKey, req: ImportRequest, file: OpenedImageFile, session: Session): Promise<void> {
    const { config, store, log } = this.deps;
    const platform = req.platform;
    const id = await fastHash(file.handle, file.size);
    await store.update(key, { id, last_heartbeat: this.now() });
    const files = imageFiles(platform, id);
    const imageDirKey = `Platforms.${platform.name}.local.imageDir`;
    await this.deps.withImageLock(platform.name, id, async () => {
      await store.update(key, {
        status: 'TRANSFER',
        status_message: `Copying ${file.path} to ${platform.name} as image ${id.slice(0, 12)}`,
        last_heartbeat: this.now(),
      });
      const copied = await this.copyIn(file, files.image, imageDirKey);
      if (copied.existing !== null && copied.existing !== copied.source) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `${file.path} has the id ${id.slice(0, 12)} (upstream's fast hash) of a different image already on ` +
            `${platform.name}; change the file (e.g. rebuild it) and import it again`,
        );
      }
      const asked = {
        private: req.userACL.length > 0 || req.groupACL.length > 0,
        userACL: req.userACL,
        groupACL: req.groupACL,
      };
      const grant = pullGrant(req.tag, session.identity?.uid ?? null, asked);
      const access = accessAfterPull(await store.findReadyById(platform.name, id), grant).access;
      const aclInMeta = access.kind === 'restricted' && !process.env.DISABLE_ACL_METADATA;
      const meta = formatImageMeta({
        format: 'squashfs',
        entrypoint: req.meta.entrypoint,
        cmd: req.meta.cmd,
        workdir: req.meta.workdir,
        env: req.meta.env,
        userAcl: aclInMeta ? [...access.users] : [],
        groupAcl: aclInMeta ? [...access.groups] : [],
        labels: req.meta.labels,
        user: null,
      });
      await writeFileAtomic(files.meta, meta, 0o600).catch((e: unknown) => {
        throw (
          diskFullError(e, platform.imageDir, imageDirKey) ??
          asShifterError(e, 'IO_ERROR', `cannot write ${files.meta}`)
        );
      });
      const now = this.now();
      const done = await store.completePull(key, {
        id,
        format: 'squashfs',
        ENV: req.meta.env,
        ENTRY: req.meta.entrypoint,
        CMD: req.meta.cmd,
        WORKDIR: req.meta.workdir,
        LABELS: req.meta.labels,
        USER: null,
        ...asked,
        now,
        expiration: expiryAfter(config, now),
        status_message: `Image ready (imported from ${file.path})`,
      });
      log.info({ system: platform.name, tag: req.tag, id, key: done.key }, 'import complete: READY');
    });
  }

  /**
   * Copies the file to `finalPath` unless an image file is there already; returns the sha256 of
   * the imported file and of the existing file (null when there was none, and it was copied).
   */
  private async copyIn(
    file: OpenedImageFile,
    finalPath: string,
    imageDirKey: string,
  ): Promise<{ source: string; existing: string | null }> {
    const existing = await open(finalPath, 'r').then(
      (h) => sha256Of(h.createReadStream()),
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return null;
        throw asShifterError(e, 'IO_ERROR', `cannot read ${finalPath}`);
      },
    );
    const source = file.handle.createReadStream({ start: 0, end: Math.max(file.size - 1, 0), autoClose: false });
    if (existing !== null) return { source: await sha256Of(source), existing };
    const hash = createHash('sha256');
    const tmp = temporaryNameFor(finalPath);
    try {
      await pipeline(source, hashing(hash), createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      await commitFile(tmp, finalPath);
    } catch (e) {
      await rm(tmp, { force: true });
      throw (
        diskFullError(e, dirname(finalPath), imageDirKey) ?? asShifterError(e, 'IO_ERROR', `cannot write ${finalPath}`)
      );
    }
    return { source: hash.digest('hex'), existing: null };
  }
}
