/**
 * Reuse of container environments (a pair of namespace fds) and of per-node image mounts.
 *
 * Why closing is always safe for running containers: the daemon's fds only keep the namespaces
 * alive for *future* launches. A launcher that received them over SCM_RIGHTS holds its own
 * copies until it has setns'd, and from then on its processes keep the namespaces alive by
 * being in them. So an idle entry can be closed at any time, a shifterd restart or `kill -9`
 * drops every cached entry (the kernel closes the fds) without touching running containers,
 * and once the last process of a container exits the kernel tears its mounts down and the
 * image's autoclear loop device goes away.
 *
 * What we must not do is close an entry between handing it out and the reply carrying its fds
 * being sent; that window is covered by a lease (acquire ... release). An entry evicted or
 * invalidated while leased is closed when its last lease ends.
 *
 * Key = (uid, image id, normalized volumes, modules, config generation): a config reload bumps
 * the generation, and `invalidate()` drops the idle entries built from the old config.
 */
import { LRUCache } from 'lru-cache';

export interface Closable {
  close(): void;
}

export interface EnvironmentKeyParts {
  uid: number;
  gid: number;
  groups: readonly number[];
  imageId: string;
  volumeSignature: string;
  modules: readonly string[];
  generation: number;
}

/** JSON keeps the parts unambiguous (no separator can be smuggled in through a path). */
export function environmentKey(p: EnvironmentKeyParts): string {
  return JSON.stringify([
    p.uid,
    p.gid,
    [...p.groups].sort((a, b) => a - b),
    p.imageId,
    p.volumeSignature,
    p.modules,
    p.generation,
  ]);
}

interface Entry<E extends Closable> {
  env: E;
  imageId: string;
  leases: number;
  /** Out of the cache (evicted, expired, invalidated): close when the last lease ends. */
  retired: boolean;
  closed: boolean;
  lastUsed: number;
}

export interface CacheEntryInfo {
  key: string;
  imageId: string;
  leases: number;
  idleMs: number;
}

export interface Lease<E> {
  readonly env: E;
  /** True when this launch reused an environment built earlier. */
  readonly reused: boolean;
  release(): void;
}

export interface CacheOptions {
  /** Most environments kept open. */
  max: number;
  /** An environment unused this long is closed. */
  idleTtlMs: number;
}

export interface Releasable {
  release(): void;
}

/**
 * Image mounts (one per image per node), shared by every environment built from them. A new
 * environment clones the mount, so releasing it later only affects environments built after.
 */
export class ImageMountPool<M extends Releasable> {
  private readonly mounts = new Map<string, { mount: Promise<M>; users: number }>();

  /** Returns the image's mount, attaching it on first use (concurrent callers share one attach). */
  async acquire(imageId: string, attach: () => Promise<M>): Promise<M> {
    let slot = this.mounts.get(imageId);
    if (slot === undefined) {
      const mount = attach();
      slot = { mount, users: 0 };
      this.mounts.set(imageId, slot);
      mount.catch(() => {
        if (this.mounts.get(imageId) === slot) this.mounts.delete(imageId);
      });
    }
    slot.users += 1;
    try {
      return await slot.mount;
    } catch (e) {
      slot.users -= 1;
      throw e;
    }
  }

  /** One user fewer; the mount is released with the last. */
  release(imageId: string): void {
    const slot = this.mounts.get(imageId);
    if (slot === undefined) return;
    slot.users -= 1;
    if (slot.users > 0) return;
    this.mounts.delete(imageId);
    slot.mount.then(
      (m) => m.release(),
      () => undefined,
    );
  }

  get attached(): number {
    return this.mounts.size;
  }

  usersOf(imageId: string): number {
    return this.mounts.get(imageId)?.users ?? 0;
  }
}

export class EnvironmentCache<E extends Closable> {
  private readonly cache: LRUCache<string, Entry<E>>;
  private readonly pending = new Map<string, Promise<Entry<E>>>();
  private readonly onRetire: (imageId: string) => void;

  /** `onClosed(imageId)` runs after an environment's fds are closed (to release image mounts). */
  constructor(opts: CacheOptions, onClosed: (imageId: string) => void = () => undefined) {
    this.onRetire = onClosed;
    this.cache = new LRUCache<string, Entry<E>>({
      max: opts.max,
      ttl: opts.idleTtlMs,
      updateAgeOnGet: true,
      ttlAutopurge: true,
      dispose: (entry) => this.retire(entry),
    });
  }

  /**
   * The environment for `key`, built by `create` if there is none (once, however many callers
   * ask at the same time). The caller must `release()` the lease after sending the reply.
   */
  async acquire(key: string, imageId: string, create: () => Promise<E>): Promise<Lease<E>> {
    const hit = this.cache.get(key);
    if (hit !== undefined) return this.lease(hit, true);
    let building = this.pending.get(key);
    const reused = building !== undefined;
    if (building === undefined) {
      building = create().then((env) => {
        const entry: Entry<E> = { env, imageId, leases: 0, retired: false, closed: false, lastUsed: Date.now() };
        this.cache.set(key, entry);
        return entry;
      });
      this.pending.set(key, building);
      const cleanup = (): void => {
        if (this.pending.get(key) === building) this.pending.delete(key);
      };
      building.then(cleanup, cleanup);
    }
    const entry = await building;
    return this.lease(entry, reused);
  }

  /** Drops every idle environment (config reload); leased ones close when released. */
  invalidate(): void {
    this.cache.clear();
  }

  /** Closes everything at shutdown, leased or not: the reply sockets are gone with us. */
  closeAll(): void {
    const entries = [...this.cache.values()];
    this.cache.clear();
    for (const e of entries) this.close(e);
  }

  get size(): number {
    return this.cache.size;
  }

  list(): CacheEntryInfo[] {
    const now = Date.now();
    return [...this.cache.entries()].map(([key, e]) => ({
      key,
      imageId: e.imageId,
      leases: e.leases,
      idleMs: now - e.lastUsed,
    }));
  }

  /** Takes one environment out of the cache (closed now, or when its last lease ends). */
  remove(key: string): boolean {
    return this.cache.delete(key);
  }

  private lease(entry: Entry<E>, reused: boolean): Lease<E> {
    entry.leases += 1;
    entry.lastUsed = Date.now();
    let released = false;
    return {
      env: entry.env,
      reused,
      release: () => {
        if (released) return;
        released = true;
        entry.leases -= 1;
        if (entry.retired && entry.leases === 0) this.close(entry);
      },
    };
  }

  private retire(entry: Entry<E>): void {
    entry.retired = true;
    if (entry.leases === 0) this.close(entry);
  }

  private close(entry: Entry<E>): void {
    if (entry.closed) return;
    entry.closed = true;
    entry.env.close();
    this.onRetire(entry.imageId);
  }
}
