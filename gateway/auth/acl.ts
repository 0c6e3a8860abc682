/** Image access lists (upstream doc/PrivateImagesAndACLS.md), pure. */
import { ShifterError } from '../../common/errors.js';
import {
  accessFromLists, mayUse, PUBLIC_ACCESS, type AccessCaller, type ImageAccess,
} from '../../common/image-access.js';
import type { Identity } from './session.js';

/** `"1,2"`, `[1, 2]`, `1` or nothing → a list of ids; anything else is a client error. */
export function parseIdList(v: unknown, field: string): number[] {
  if (v === undefined || v === null || v === '') return [];
  const items: unknown[] = typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean)
    : Array.isArray(v) ? v : [v];
  const ids = items.map((x) => (typeof x === 'string' && /^\d+$/.test(x) ? Number(x) : x));
  if (!ids.every((x): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x >= 0)) {
    throw new ShifterError('BAD_ARGUMENT', `${field} must be numeric ids, e.g. "1001,1002" (got ${JSON.stringify(v)})`);
  }
  if (ids.length > 1000) throw new ShifterError('BAD_ARGUMENT', `${field} has ${ids.length} ids; at most 1000 are allowed`);
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

export interface AclHolder { private: boolean | null; userACL: number[]; groupACL: number[] }

/** Upstream's fields as an access: `private: false` is public whatever the lists say. */
export function accessOf(h: AclHolder): ImageAccess {
  return h.private === false ? PUBLIC_ACCESS : accessFromLists(h.userACL, h.groupACL);
}

function callerOf(who: Identity | null): AccessCaller | null {
  return who && { uid: who.uid, gid: who.gid, groups: who.gids };
}

export function canRead(rec: AclHolder, who: Identity | null): boolean {
  return mayUse(accessOf(rec), callerOf(who));
}
