/**
 * From what the user typed to an image file on this node: `id:<hex>` is used directly;
 * `docker:`/`custom:` names (or bare names, with defaultImageType) are looked up in the image
 * gateway (through the shared client in common/gateway-client, as shifterimg does), which
 * answers with the id. Lookups are cached briefly so a 1000-rank job start asks the gateway
 * once, not 1000 times. The image's .meta (entrypoint, env, ACLs) is read from
 * imagePath and its ACL enforced against the kernel-given identity of the caller. With a lazy
 * image cache configured, an image that is not in imagePath is read lazily instead: its file is
 * the FUSE server's (node-daemon/lazy/), its metadata the `.meta` text the gateway recorded
 * (with the digest the image's chunk index must hash to), so `id:` images can be lazy too.
 */
import { readFile, stat } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { ShifterError, describeError, isShifterError } from '../common/errors.js';
import { ANONYMOUS, GatewayClient, type CredentialSource } from '../common/gateway-client/client.js';
import { GatewayAnswerError, GatewayUnreachableError, type AttemptFailure } from '../common/gateway-client/errors.js';
import {
  formatImageDescriptor,
  isImageId,
  parseImageDescriptor,
  type ImageDescriptor,
  type ImageId,
  type ImageType,
} from '../common/image-descriptor.js';
import type { ImageRunConfig } from './command/command.js';
import { parseImageMeta } from '../common/image-meta.js';
import { accessFromLists, mayUse } from '../common/image-access.js';
import type { ImageFacts } from './lazy/chunk-source.js';

/** What shifterd needs from `<id>.meta`. */
export interface ImageMetaInfo {
  run: ImageRunConfig;
  /** Empty lists on both: a public image. */
  userAcl: readonly number[];
  groupAcl: readonly number[];
}

export function metaInfoFromText(text: string, fileName: string): ImageMetaInfo {
  let meta;
  try {
    meta = parseImageMeta(text);
  } catch (e) {
    throw new ShifterError('BAD_CONFIG', `${fileName}: ${describeError(e)}`, e);
  }
  return {
    run: {
      entrypoint: meta.entrypoint ?? undefined,
      cmd: meta.cmd ?? undefined,
      workdir: meta.workdir ?? undefined,
      env: meta.env,
    },
    userAcl: meta.userAcl,
    groupAcl: meta.groupAcl,
  };
}

export interface Caller {
  uid: number;
  gid: number;
  groups: readonly number[];
}

export interface SquashfsImage {
  kind: 'squashfs';
  id: ImageId;
  descriptor: ImageDescriptor;
  /** `<imagePath>/<id>.squashfs`, or the lazy image's file on the FUSE mount */
  squashfsPath: string;
  meta: ImageMetaInfo;
}

/**
 * Upstream's `local:/path`: a directory tree on the node as the root (allowLocalChroot). Only the
 * path is checked here; the native helper opens it as the user, who must be able to read it.
 */
export interface LocalImage {
  kind: 'local';
  descriptor: ImageDescriptor;
  path: string;
  /** No .meta: no entrypoint, no image environment, no ACL beyond the directory's own modes. */
  meta: ImageMetaInfo;
}

export type ResolvedImage = SquashfsImage | LocalImage;

const LOCAL_META: ImageMetaInfo = {
  run: { entrypoint: undefined, cmd: undefined, workdir: undefined, env: [] },
  userAcl: [],
  groupAcl: [],
};

/** Lazy images through the FUSE server (node-daemon/lazy/lazy-supervisor.ts). */
export interface LazyImageOpener {
  /** What the gateway recorded for the image: its index digest and `.meta` text. */
  facts(id: ImageId): Promise<ImageFacts>;
  /** Makes the image readable, its index checked against `indexDigest`; returns its file. */
  open(id: ImageId, indexDigest: string): Promise<string>;
  /**
   * A loop device was attached over `file`, which open() returned: if the image was kept whole
   * meanwhile (its loop devices moved off FUSE before this one existed), this one is moved too.
   */
  attached(id: ImageId, file: string): Promise<void>;
}

export interface ResolverOptions {
  /** Empty: no shared image directory, every image is lazy (needs `lazy`). */
  imagePath: string;
  lazy?: LazyImageOpener;
  gateways: readonly string[];
  system: string | undefined;
  defaultImageType: ImageType;
  /** udiRoot.conf's gatewayTimeout (seconds per gateway request); unset: the gateway client's default. */
  gatewayTimeout?: number;
  /** How long a gateway answer is reused. */
  cacheTtlMs?: number;
  /** A munge credential made as the caller, for the retry of a lookup that found nothing (private images). */
  credentialFor?: (caller: Caller) => Promise<string | undefined>;
  /** udiRoot.conf allowLocalChroot: `local:` images are refused unless set. */
  allowLocalChroot?: boolean;
}

/**
 * The .meta holds the image's access, the union over every tag pulled onto it, which is what a
 * launch by `id:` is allowed by; a launch by tag was already held to that tag's own access by the
 * gateway's lookup (common/image-access.ts has the rule).
 */
export function checkImageAcl(meta: ImageMetaInfo, caller: Caller, imageName: string): void {
  if (mayUse(accessFromLists(meta.userAcl, meta.groupAcl), caller)) return;
  throw new ShifterError(
    'PERMISSION_DENIED',
    `permission denied to image ${imageName}: it is private and uid ${caller.uid} and your groups are not on its access list; ask its owner to re-pull it with --user/--group`,
  );
}

interface LookupRecord {
  id?: unknown;
  status?: unknown;
}

type LookupAnswer =
  | { kind: 'found'; id: ImageId }
  | { kind: 'missing' }
  | { kind: 'not-ready'; status: string }
  | { kind: 'unreachable'; failures: readonly AttemptFailure[] }
  | { kind: 'failed'; error: ShifterError };

/** `host (ECONNREFUSED)`: the errno where there is one, as admins grep logs for it. */
function describeFailure(f: AttemptFailure): string {
  return `${f.gateway} (${f.errno ?? f.reason})`;
}

/** What a lookup answer means for a launch; a record without a usable id is the gateway's fault. */
function lookupAnswer(record: unknown): LookupAnswer {
  const r = (typeof record === 'object' && record !== null ? record : {}) as LookupRecord;
  if (r.status !== undefined && r.status !== 'READY') {
    return { kind: 'not-ready', status: typeof r.status === 'string' ? r.status : JSON.stringify(r.status) };
  }
  if (typeof r.id !== 'string' || !isImageId(r.id)) {
    return { kind: 'failed', error: new GatewayAnswerError("the image gateway's answer has no valid image id") };
  }
  return { kind: 'found', id: r.id };
}

/** A lookup's image id. */
interface Found {
  id: ImageId;
}

export class ImageResolver {
  private readonly opts: ResolverOptions;
  private readonly lookups: LRUCache<string, Found>;
  /** Undefined when udiRoot.conf names no gateway or system: only id: images resolve then. */
  private readonly client: GatewayClient | undefined;
  /** Parsed meta files by image id, with the (inode, size, mtime) they were parsed at. */
  private readonly metaCache = new LRUCache<ImageId, { version: string; meta: ImageMetaInfo }>({ max: 1000 });

  constructor(opts: ResolverOptions) {
    this.opts = opts;
    this.lookups = new LRUCache<string, Found>({ max: 1000, ttl: opts.cacheTtlMs ?? 30_000 });
    this.client =
      opts.gateways.length > 0 && opts.system !== undefined
        ? new GatewayClient({
            gateways: opts.gateways,
            system: opts.system,
            gatewayTimeout: opts.gatewayTimeout,
            credential: ANONYMOUS,
          })
        : undefined;
  }

  /** A loop device was attached over a resolved image's file (LazyImageOpener.attached; nothing for other images). */
  async attached(image: SquashfsImage): Promise<void> {
    await this.opts.lazy?.attached(image.id, image.squashfsPath);
  }

  /** Parses and resolves `request`, reads the meta and checks the ACL for `caller`. */
  async resolve(request: string, caller: Caller): Promise<ResolvedImage> {
    const asked = parseImageDescriptor(request, this.opts.defaultImageType);
    if (asked.type === 'local') return this.localImage(asked);
    const { id, descriptor } = await this.resolveId(request, caller);
    const name = formatImageDescriptor(descriptor);
    const { lazy } = this.opts;
    if (lazy !== undefined && !(await this.inImagePath(id))) {
      // The access check comes first: a user must not make the node fetch an image they may not use.
      const facts = await lazy.facts(id);
      const meta = metaInfoFromText(facts.meta, `the gateway's metadata of image ${name}`);
      checkImageAcl(meta, caller, name);
      return { kind: 'squashfs', id, descriptor, squashfsPath: await lazy.open(id, facts.indexDigest), meta };
    }
    const meta = await this.readMeta(id, name);
    checkImageAcl(meta, caller, name);
    return { kind: 'squashfs', id, descriptor, squashfsPath: join(this.opts.imagePath, `${id}.squashfs`), meta };
  }

  private localImage(descriptor: ImageDescriptor): LocalImage {
    const path = descriptor.tag;
    if (this.opts.allowLocalChroot !== true) {
      throw new ShifterError(
        'PERMISSION_DENIED',
        `local: images are disabled on this system (udiRoot.conf allowLocalChroot=0): cannot use local:${path}; ` +
          'use a gateway image (shifterimg pull ...) or ask the site to set allowLocalChroot=1',
      );
    }
    if (!isAbsolute(path)) {
      throw new ShifterError(
        'BAD_ARGUMENT',
        `local:${path} is not an absolute directory path; give one like --image=local:/scratch/me/rootfs`,
      );
    }
    return { kind: 'local', descriptor, path, meta: LOCAL_META };
  }

  /** Parses `request` and finds its id (through the gateway unless it is `id:`), without the image files. */
  async resolveId(request: string, caller: Caller): Promise<{ id: ImageId; descriptor: ImageDescriptor } & Found> {
    const descriptor = parseImageDescriptor(request, this.opts.defaultImageType);
    switch (descriptor.type) {
      case 'id':
        if (!isImageId(descriptor.tag)) throw new ShifterError('BAD_ARGUMENT', `'${request}' is not a valid image id`);
        return { id: descriptor.tag, descriptor };
      case 'local':
        throw new ShifterError(
          'BAD_ARGUMENT',
          `local:${descriptor.tag} is a directory on the node, not an image with an id; launch it with shifter`,
        );
      default:
        return { ...(await this.lookup(descriptor, caller)), descriptor };
    }
  }

  private async inImagePath(id: ImageId): Promise<boolean> {
    if (this.opts.imagePath === '') return false;
    try {
      await stat(join(this.opts.imagePath, `${id}.meta`));
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Every launch checks that both files are still there (the gateway may have replaced or
   * expired the image), but the meta file is parsed again only when it changed: on a shared
   * filesystem each read costs a round trip, and a warm launch should cost none it can avoid.
   */
  private async readMeta(id: ImageId, name: string): Promise<ImageMetaInfo> {
    const metaPath = join(this.opts.imagePath, `${id}.meta`);
    const imageFile = join(this.opts.imagePath, `${id}.squashfs`);
    const [metaStat, imageStat] = await Promise.allSettled([stat(metaPath), stat(imageFile)]);
    if (metaStat.status === 'rejected') {
      const e: unknown = metaStat.reason;
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ShifterError(
          'NOT_FOUND',
          `image ${name} is not on this system (no ${metaPath}); run \`shifterimg pull ${name}\``,
        );
      }
      throw new ShifterError('IO_ERROR', `cannot read ${metaPath}: ${describeError(e)}`, e);
    }
    if (imageStat.status === 'rejected') {
      throw new ShifterError(
        'NOT_FOUND',
        `image ${name} has metadata but no ${imageFile}; run \`shifterimg pull ${name}\` again`,
      );
    }
    const version = `${metaStat.value.ino}:${metaStat.value.size}:${metaStat.value.mtimeMs}`;
    const cached = this.metaCache.get(id);
    if (cached?.version === version) return cached.meta;
    let text: string;
    try {
      text = await readFile(metaPath, 'utf8');
    } catch (e) {
      throw new ShifterError('IO_ERROR', `cannot read ${metaPath}: ${describeError(e)}`, e);
    }
    const meta = metaInfoFromText(text, metaPath);
    this.metaCache.set(id, { version, meta });
    return meta;
  }

  private async lookup(d: ImageDescriptor, caller: Caller): Promise<Found> {
    const name = formatImageDescriptor(d);
    const { client } = this;
    if (client === undefined) {
      throw new ShifterError(
        'BAD_CONFIG',
        `cannot look up ${name}: udiRoot.conf sets no imageGateway/system; use --image=id:<id> or configure the gateway`,
      );
    }
    const publicKey = `|${name}`;
    const privateKey = `${caller.uid}|${name}`;
    const cached = this.lookups.get(publicKey) ?? this.lookups.get(privateKey);
    if (cached !== undefined) return cached;

    // Public images need no credential. A private one is invisible to an anonymous lookup, so
    // a 404 is asked again with munge credentials made as the caller (when munge works here).
    const anonymous = await this.ask(client, d, ANONYMOUS);
    let answer = anonymous;
    let key = publicKey;
    const { credentialFor } = this.opts;
    if (anonymous.kind === 'missing' && credentialFor !== undefined) {
      const asCaller: CredentialSource = async () => {
        const credential = await credentialFor(caller);
        if (credential === undefined) throw new ShifterError('AUTH_FAILED', 'munge cannot make a credential here');
        return credential;
      };
      // Anything but a definite answer leaves the anonymous one: the gateway has been reached.
      const authed = await this.ask(client, d, asCaller);
      if (authed.kind === 'found' || authed.kind === 'not-ready') {
        answer = authed;
        key = privateKey;
      }
    }
    switch (answer.kind) {
      case 'found': {
        const found = { id: answer.id };
        this.lookups.set(key, found);
        return found;
      }
      case 'missing':
        throw new ShifterError(
          'NOT_FOUND',
          `image not found: ${name} is not on ${this.opts.system} or you may not use it; run \`shifterimg pull ${name}\``,
        );
      case 'not-ready':
        throw new ShifterError(
          'NOT_FOUND',
          `image ${name} is not ready (status ${answer.status}); wait for \`shifterimg pull ${name}\` to finish`,
        );
      case 'unreachable':
        throw new ShifterError(
          'UNREACHABLE',
          `image gateway unreachable at ${answer.failures.map(describeFailure).join(', ')}: cannot look up ${name}; ` +
            'check imageGateway in udiRoot.conf, or use --image=id:<id>',
        );
      case 'failed':
        throw new ShifterError(answer.error.code, `cannot look up ${name}: ${answer.error.message}`, answer.error);
    }
  }

  /** One lookup through the gateway client, its outcome as a value. */
  private async ask(client: GatewayClient, d: ImageDescriptor, credential: CredentialSource): Promise<LookupAnswer> {
    let record: unknown;
    try {
      record = await client.lookup(d, credential);
    } catch (e) {
      if (e instanceof GatewayUnreachableError) return { kind: 'unreachable', failures: e.failures };
      if (isShifterError(e)) return e.code === 'NOT_FOUND' ? { kind: 'missing' } : { kind: 'failed', error: e };
      throw e;
    }
    return lookupAnswer(record);
  }
}
