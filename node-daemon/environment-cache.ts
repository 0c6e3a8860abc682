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
 * A hold (e.g. a Slurm job's, from its prolog to its epilog) keeps an entry for as long as one
 * holder has it, whatever the idle limit or the LRU bound: a held entry dropped by the LRU stays
 * findable in `held`. Holds are counted per holder name, so two jobs sharing one environment do
 * not race: the entry goes when the last holder lets go. Holds live in shifterd's memory only.
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
  /** A job's own environment (it holds job-specific files): the holder's name. */
  job?: string;
  /** The module devices in its /dev (node-daemon/command/devices.ts), when its modules list any. */
  devices?: readonly string[];
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
    ...(p.job === undefined ? [] : [p.job]),
    ...(p.devices === undefined ? [] : [{ devices: p.devices }]),
  ]);
}

interface Entry<E extends Closable> {
  key: string;
  env: E;
  imageId: string;
  leases: number;
  /** Out of the cache (evicted, expired, invalidated): close when the last lease ends. */
  retired: boolean;
  closed: boolean;
  lastUsed: number;
  holders: Set<string>;
}

export interface CacheEntryInfo {
  key: string;
  imageId: string;
  leases: number;
  idleMs: number;
  holders: string[];
}

export interface Lease<E> {
  readonly env: E;
  /** True when this launch reused an environment built earlier. */
  readonly reused: boolean;
  /** Keeps the environment for `holder` until `unhold(holder)`, past the lease and the idle limit. */
  hold(holder: string): void;
  release(): void;
}

export interface HeldEnvironment<E> {
  key: string;
  env: E;
  /** Every holder, this one included. */
  holders: readonly string[];
}

export interface UnholdResult {
  /** Environments this holder was the last to hold: out of the cache now. */
  dropped: number;
  /** Environments other holders still hold. */
  kept: number;
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
  private readonly held = new Map<string, Entry<E>>();
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
    const hit = this.cache.get(key) ?? this.held.get(key);
    if (hit !== undefined) return this.lease(hit, true);
    let building = this.pending.get(key);
    const reused = building !== undefined;
    if (building === undefined) {
      building = create().then((env) => {
        const entry: Entry<E> = {
          key,
          env,
          imageId,
          leases: 0,
          retired: false,
          closed: false,
          lastUsed: Date.now(),
          holders: new Set(),
        };
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

  /** The environment for `key` if there is one already; never builds. */
  acquireExisting(key: string): Lease<E> | undefined {
    const hit = this.cache.get(key) ?? this.held.get(key);
    return hit === undefined ? undefined : this.lease(hit, true);
  }

  /** Drops every idle environment (config reload); leased ones close when released, held ones when let go. */
  invalidate(): void {
    this.cache.clear();
  }

  /** Closes everything at shutdown, leased or not: the reply sockets are gone with us. */
  closeAll(): void {
    const entries = this.entries();
    this.held.clear();
    this.cache.clear();
    for (const e of entries) this.close(e);
  }

  get size(): number {
    return this.entries().length;
  }

  list(): CacheEntryInfo[] {
    const now = Date.now();
    return this.entries().map((e) => ({
      key: e.key,
      imageId: e.imageId,
      leases: e.leases,
      idleMs: now - e.lastUsed,
      holders: [...e.holders].sort(),
    }));
  }

  /** Takes one environment out of the cache, holds and all (closed now, or when its last lease ends). */
  remove(key: string): boolean {
    const entry = this.cache.peek(key) ?? this.held.get(key);
    if (entry === undefined) return false;
    this.drop(entry);
    return true;
  }

  /** What `holder` holds (optionally only `key`), before `unhold`: e.g. to find its processes. */
  heldBy(holder: string, key?: string): HeldEnvironment<E>[] {
    return [...this.held.values()]
      .filter((e) => e.holders.has(holder) && (key === undefined || e.key === key))
      .map((e) => ({ key: e.key, env: e.env, holders: [...e.holders] }));
  }

  /** Ends `holder`'s holds (optionally only on `key`); an environment nobody holds any more is dropped. */
  unhold(holder: string, key?: string): UnholdResult {
    const result: UnholdResult = { dropped: 0, kept: 0 };
    for (const entry of [...this.held.values()]) {
      if (!entry.holders.has(holder) || (key !== undefined && entry.key !== key)) continue;
      entry.holders.delete(holder);
      if (entry.holders.size > 0) {
        result.kept += 1;
        continue;
      }
      this.drop(entry);
      result.dropped += 1;
    }
    return result;
  }

  /** Cached and held entries, each once. */
  private entries(): Entry<E>[] {
    const all = new Set<Entry<E>>(this.cache.values());
    for (const e of this.held.values()) all.add(e);
    return [...all];
  }

  private drop(entry: Entry<E>): void {
    entry.holders.clear();
    this.held.delete(entry.key);
    if (this.cache.peek(entry.key) === entry) this.cache.delete(entry.key);
    else this.retire(entry);
  }

  private lease(entry: Entry<E>, reused: boolean): Lease<E> {
    entry.leases += 1;
    entry.lastUsed = Date.now();
    let released = false;
    return {
      env: entry.env,
      reused,
      hold: (holder) => {
        if (entry.closed) return;
        entry.holders.add(holder);
        this.held.set(entry.key, entry);
      },
      release: () => {
        if (released) return;
        released = true;
        entry.leases -= 1;
        this.closeIfUnused(entry);
      },
    };
  }

  private retire(entry: Entry<E>): void {
    entry.retired = true;
    this.closeIfUnused(entry);
  }

  private closeIfUnused(entry: Entry<E>): void {
    if (entry.retired && entry.leases === 0 && entry.holders.size === 0) this.close(entry);
  }

  private close(entry: Entry<E>): void {
    if (entry.closed) return;
    entry.closed = true;
    entry.env.close();
    this.onRetire(entry.imageId);
  }
}
