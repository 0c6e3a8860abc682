/**
 * One pull, start to finish: resolve the manifest, download the layers into the blob cache,
 * convert them to squashfs, index its chunks (gateway/chunks/index-file.ts), run the optional
 * examiner, then transfer `<id>.squashfs`, `<id>.chunks` and finally `<id>.meta` into the system's
 * imageDir (local, or remote over ssh: transfer/image-target.ts; a remote system gets no `.chunks`,
 * as this gateway cannot serve its bytes). The meta file is written last, so "meta exists" means
 * "the image is complete"; all go through temp + fsync + rename.
 * If both files already exist (the same image under another tag, or an ACL change), only the meta
 * file is rewritten (upstream's meta-only path), once the layers are known to be served to this
 * pull (the blob cache's reuse rule; usually no request or a HEAD per layer), and an image
 * converted before chunk indexes existed gets its `.chunks` then.
 * The meta file's USERACL/GROUPACL are the image's access: the union of what every user's pull of
 * every tag onto it asked for (store/record.ts, common/image-access.ts). The files, the meta and
 * the READY record are written under the image's lock, so concurrent pulls of two tags of one
 * image each see the other's access.
 */
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ShifterError } from '../../common/errors.js';
import { diskFullError } from '../../common/disk-full.js';
import type { Logger } from '../../common/logger.js';
import { formatImageMeta } from '../../common/image-meta.js';
import type { ImageId } from '../../common/image-descriptor.js';
import { computeChunkIndex } from '../chunks/index-file.js';
import { convertLayersToSquashfs } from '../convert/index.js';
import { checkCompressedSizes } from '../convert/limits.js';
import { isDockerHub, referenceForManifest, type ImageReference } from '../reference/image-ref.js';
import {
  createConnectGuard,
  defaultBaseUrl,
  fetchLayers,
  RegistryClient,
  type BlobCache,
  type FetchProgress,
  type Platform,
  type RegistryClientOptions,
  type RegistryEndpoint,
} from '../registry/index.js';
import { registryAccess } from './registry-access.js';
import { imageTarget } from '../transfer/image-target.js';
import { expiryAfter } from '../expire/rules.js';
import type { GatewayConfig, PlatformConfig } from '../config/imagemanager.js';
import type { RegistryLogin } from '../auth/session.js';
import { accessAfterPull, pullGrant, type CompletedPull, type ImageRecord } from '../store/record.js';
import type { ImageStatus } from '../store/status.js';

export interface PullRequest {
  system: string;
  itype: string;
  /** The tag as records know it (`pulltag`). */
  tag: string;
  /** The same tag parsed, once, where it entered the gateway. */
  ref: ImageReference;
  userACL: number[];
  groupACL: number[];
  /** The uid that asked for the pull (null: anonymous); the access it asks for is that user's grant. */
  requesterUid: number | null;
}

/** What the pipeline reports back; the manager turns these into store writes. */
export interface PipelineHooks {
  status(status: ImageStatus, message: string): Promise<void>;
  progress: (p: FetchProgress) => void;
  identified(id: string, location: string): Promise<void>;
  /** Layer bytes that came over the network (metrics). */
  downloaded: (bytes: number) => void;
  /** Bytes written into the system's imageDir (metrics). */
  written: (bytes: number) => void;
  /** The files are in place: record READY. Called under the image's lock. */
  completed(result: CompletedPull): Promise<void>;
}

export interface PipelineContext {
  config: GatewayConfig;
  log: Logger;
  /** Credentials for a location (from the caller's session), or null. */
  credentials(location: string): RegistryLogin | null;
  /** Serialises work on one image id across concurrent pulls in this process. */
  withImageLock<T>(id: string, fn: () => Promise<T>): Promise<T>;
  /** The READY record of image `id` on this system, if any (the access of its other tags). */
  readyRecord(id: string): Promise<ImageRecord | null>;
  signal: AbortSignal;
  /** Scratch directory owned by this pull (under ExpandDirectory), removed afterwards. */
  workDir: string;
  /** The gateway's blob cache (one per process). */
  cache: BlobCache;
}

export function parsePlatform(s: string): Platform {
  const [os, architecture, variant] = s.split('/') as [string, string, string?];
  return variant ? { os, architecture, variant } : { os, architecture };
}

function endpointFor(
  config: GatewayConfig,
  platform: PlatformConfig,
  location: string,
  login: RegistryLogin | null,
): RegistryEndpoint {
  const loc = config.locations[location];
  const endpoint: RegistryEndpoint = {
    baseUrl: loc?.baseUrl ?? defaultBaseUrl(location, isDockerHub(location)),
    authMethod: loc?.authMethod ?? 'token',
    platform: parsePlatform(platform.platform),
  };
  if (loc?.caFile) endpoint.caFile = loc.caFile;
  if (login) endpoint.credentials = login;
  return endpoint;
}

function runExaminer(examiner: string, imagePath: string, id: string, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(examiner, [imagePath, id], { signal, timeout: 3600_000, maxBuffer: 4 << 20 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if (signal.aborted) return reject(err);
      const why = String(stderr).trim().split('\n').pop() ?? '';
      const code = err.code;
      reject(
        new ShifterError(
          'UNSAFE_CONTENT',
          `the examiner ${examiner} rejected image ${id} (${typeof code === 'number' ? `exit ${code}` : String(code ?? err.message)})${why ? `: ${why}` : ''}`,
        ),
      );
    });
  });
}

export async function runPullPipeline(req: PullRequest, ctx: PipelineContext, hooks: PipelineHooks): Promise<void> {
  const { config, log, signal } = ctx;
  const platform = config.platforms[req.system];
  if (!platform) throw new ShifterError('NOT_FOUND', `system "${req.system}" is not configured`);

  const { ref } = req;
  await hooks.status('PULLING', `Getting manifest for ${ref.location}/${ref.repository}:${referenceForManifest(ref)}`);
  const login = ctx.credentials(ref.location);
  const guarded = registryAccess(ref.location, config) === 'pattern';
  const options: RegistryClientOptions = guarded ? { guard: createConnectGuard() } : {};
  const client = new RegistryClient(endpointFor(config, platform, ref.location, login), log, options);
  const resolved = await client.resolve(ref.repository, referenceForManifest(ref), signal);
  const id = resolved.manifestDigest.replace(/^sha256:/, '') as ImageId;
  if (!/^[0-9a-f]{64}$/.test(id))
    throw new ShifterError(
      'REGISTRY_ERROR',
      `the registry returned a manifest digest "${resolved.manifestDigest}" that is not sha256`,
    );
  await hooks.identified(id, ref.location);

  const isPrivate = resolved.usedCredentials || req.userACL.length > 0 || req.groupACL.length > 0;
  const asked = { private: isPrivate, userACL: req.userACL, groupACL: req.groupACL };
  const cfg = resolved.config;
  const target = imageTarget(platform, signal);

  return ctx.withImageLock(id, async () => {
    // Every pull gets the layers through the blob cache, even when the image is already on the
    // system: its access is granted only if this pull's registry serves every layer to this pull
    // (registry/blob-reuse.ts), not because a manifest with the same digest was served somewhere.
    checkCompressedSizes(resolved.layers, config.limits);
    const paths = await fetchLayers(client, ref.repository, resolved.layers, ctx.cache, {
      concurrency: config.layerConcurrency,
      signal,
      onProgress: hooks.progress,
      onDownloaded: hooks.downloaded,
    }).catch((e: unknown) => {
      throw diskFullError(e, config.cacheDirectory, 'CacheDirectory') ?? e;
    });
    let metaOnly = false;
    let chunkIndex: string | undefined;
    if (await target.complete(id)) {
      metaOnly = true;
      await hooks.status('TRANSFER', `Image ${id.slice(0, 12)} is already on ${req.system}; updating its metadata`);
      chunkIndex = await target.existingChunkIndex(id);
    } else {
      await hooks.status('CONVERSION', `Converting ${resolved.layers.length} layers to squashfs`);
      await mkdir(ctx.workDir, { recursive: true });
      const converted = join(ctx.workDir, `${id}.squashfs`);
      const layers = resolved.layers.map((l, i) => ({ path: paths[i], mediaType: l.mediaType, digest: l.digest }));
      const options: Parameters<typeof convertLayersToSquashfs>[2] = { log, signal, limits: config.limits };
      const extra = config.converterOptions.squashfs;
      if (extra) options.compression = extra;
      const report = await convertLayersToSquashfs(layers, converted, options).catch((e: unknown) => {
        throw diskFullError(e, config.expandDirectory, 'ExpandDirectory') ?? e;
      });
      const { entries, droppedTotal, bytes, seconds } = report;
      log.info({ id, entries, dropped: droppedTotal, bytes, seconds }, 'image converted');
      if (config.examiner) {
        await hooks.status('EXAMINATION', `Running the examiner on image ${id.slice(0, 12)}`);
        await runExaminer(config.examiner, converted, id, signal);
      }
      const index = target.servesChunks ? await computeChunkIndex(converted, id, undefined, signal) : undefined;
      chunkIndex = index?.digest;
      await hooks.status('TRANSFER', `Copying image ${id.slice(0, 12)} to ${req.system}`);
      await target.putImage(converted, id);
      hooks.written(bytes);
      if (index) {
        await target.putChunkIndex(index, id);
        hooks.written(index.bytes.length);
      }
    }
    const grant = pullGrant(req.tag, req.requesterUid, asked);
    const imageAccess = accessAfterPull(await ctx.readyRecord(id), grant).access;
    const aclInMeta = imageAccess.kind === 'restricted' && !process.env.DISABLE_ACL_METADATA;
    const meta = formatImageMeta({
      format: 'squashfs',
      entrypoint: cfg.entrypoint,
      cmd: cfg.cmd,
      workdir: cfg.workingDir,
      env: cfg.env,
      userAcl: aclInMeta ? [...imageAccess.users] : [],
      groupAcl: aclInMeta ? [...imageAccess.groups] : [],
      labels: cfg.labels,
      user: cfg.user,
      chunkIndex,
    });
    await target.putMeta(meta, id);
    hooks.written(Buffer.byteLength(meta));
    log.info({ id, tag: req.tag, system: req.system, metaOnly }, 'image transferred');
    const now = Date.now() / 1000;
    await hooks.completed({
      id,
      format: 'squashfs',
      ENV: cfg.env,
      ENTRY: cfg.entrypoint,
      CMD: cfg.cmd,
      WORKDIR: cfg.workingDir,
      LABELS: cfg.labels,
      USER: cfg.user,
      chunkIndex,
      ...asked,
      now,
      expiration: expiryAfter(config, now),
      status_message: metaOnly ? 'Image ready (already on the system; metadata updated)' : 'Image ready',
    });
  });
}
