/**
 * Image access lists (upstream doc/PrivateImagesAndACLS.md) as the gateway applies them, pure.
 * The rule itself, also for tags that share one image id, is common/image-access.ts: a lookup by
 * tag applies that tag's access, a lookup by id the image's (the union of its tags'), and a list
 * shows each caller only the tags they may use by name.
 */
import { ShifterError } from '../../common/errors.js';
import { combineAccess, mayUse, type AccessCaller } from '../../common/image-access.js';
import { accessOf, aclFields, tagAccess, type AclHolder, type ImageRecord } from '../store/record.js';
import type { Identity } from './session.js';

/** `"1,2"`, `[1, 2]`, `1` or nothing → a list of ids; anything else is a client error. */
export function parseIdList(v: unknown, field: string): number[] {
  if (v === undefined || v === null || v === '') return [];
  const items: unknown[] =
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : Array.isArray(v)
        ? v
        : [v];
  const ids = items.map((x) => (typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x));
  if (!ids.every((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new ShifterError('BAD_ARGUMENT', `${field} must be numeric ids, e.g. "1001,1002" (got ${JSON.stringify(v)})`);
  }
  if (ids.length > 1000)
    throw new ShifterError('BAD_ARGUMENT', `${field} has ${ids.length} ids; at most 1000 are allowed`);
  return [...new Set(ids)];
}

/** A non-empty requested list always includes the requester (so they can still use the image). */
export function withRequester(requested: number[], requesterId: number | undefined): number[] {
  if (requested.length === 0 || requesterId === undefined) return requested;
  return requested.includes(requesterId) ? requested : [...requested, requesterId];
}

export function sameIds(a: readonly number[], b: readonly number[]): boolean {
  const x = [...new Set(a)].sort((p, q) => p - q);
  const y = [...new Set(b)].sort((p, q) => p - q);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

function callerOf(who: Identity | null): AccessCaller | null {
  return who && { uid: who.uid, gid: who.gid, groups: who.gids };
}

export function canRead(rec: AclHolder, who: Identity | null): boolean {
  return mayUse(accessOf(rec), callerOf(who));
}

/** The tags of `rec` that `who` may use by name. */
export function readableTags(rec: ImageRecord, who: Identity | null): string[] {
  const caller = callerOf(who);
  return rec.tag.filter((t) => mayUse(tagAccess(rec, t), caller));
}

/** `rec` naming only the tags `who` may use: another user's private tag of the same image stays unnamed. */
export function withReadableTags(rec: ImageRecord, who: Identity | null): ImageRecord {
  return { ...rec, tag: readableTags(rec, who) };
}

/**
 * A READY record as `who` sees it in a list: the tags they may use, with the union of those tags'
 * access in the ACL fields; null when there is none. A record no tag points at any more is shown
 * when the image's own access admits them (it can still be used by id).
 */
export function listedRecord(rec: ImageRecord, who: Identity | null): ImageRecord | null {
  if (rec.tag.length === 0) return canRead(rec, who) ? rec : null;
  const tags = readableTags(rec, who);
  const [first, ...rest] = tags.map((t) => tagAccess(rec, t));
  if (first === undefined) return null;
  return { ...rec, tag: tags, ...aclFields(combineAccess(first, ...rest)) };
}
