/**
 * Who may use an image: the one rule the gateway (lookups, lists) and shifterd (launches) apply.
 *
 * An access is public or a list of uids and gids; a caller may use a restricted image when their
 * uid is on the user list or their primary gid or any supplementary gid is on the group list
 * (upstream's check_image_permissions). A private pull with both lists empty is public, as upstream.
 *
 * Several tags can point at one image id (the same content pushed under two names). Each tag keeps
 * the access its last pull asked for, and one user's pull never narrows what another user pulled:
 * - a lookup or launch by tag applies that tag's own access;
 * - the image itself (`<id>.meta`, lookups and launches by `id:`) carries the union of the accesses
 *   of the tags pulled onto it: public when any of them is public, otherwise every listed uid and
 *   every listed gid. Because the check is "uid listed or a group listed", a caller passes the
 *   union exactly when they pass the access of at least one of those tags.
 * So the same content pulled publicly stays public under every name and by id, while a private tag
 * stays invisible by its name to those not on its list.
 */

export type ImageAccess =
  | { readonly kind: 'public' }
  | { readonly kind: 'restricted'; readonly users: readonly number[]; readonly groups: readonly number[] };

/** The identity to check: from the kernel (shifterd) or from munge (gateway), never from a client field. */
export interface AccessCaller {
  uid: number;
  gid: number;
  /** Supplementary gids (may include the primary one). */
  groups: readonly number[];
}

export const PUBLIC_ACCESS: ImageAccess = { kind: 'public' };

/** Lists as upstream stores them (record fields, `.meta` USERACL/GROUPACL): both empty means public. */
export function accessFromLists(users: readonly number[], groups: readonly number[]): ImageAccess {
  if (users.length === 0 && groups.length === 0) return PUBLIC_ACCESS;
  return { kind: 'restricted', users: uniqueSorted(users), groups: uniqueSorted(groups) };
}

/** The union: public when any is public, otherwise every uid and gid of every access. */
export function combineAccess(first: ImageAccess, ...rest: readonly ImageAccess[]): ImageAccess {
  const all = [first, ...rest];
  if (all.some((a) => a.kind === 'public')) return PUBLIC_ACCESS;
  const restricted = all as Extract<ImageAccess, { kind: 'restricted' }>[];
  return accessFromLists(
    restricted.flatMap((a) => a.users),
    restricted.flatMap((a) => a.groups),
  );
}

/** An anonymous caller (null) may use public images only. */
export function mayUse(access: ImageAccess, caller: AccessCaller | null): boolean {
  if (access.kind === 'public') return true;
  if (caller === null) return false;
  if (access.users.includes(caller.uid)) return true;
  return access.groups.includes(caller.gid) || caller.groups.some((g) => access.groups.includes(g));
}

function uniqueSorted(ids: readonly number[]): number[] {
  return [...new Set(ids)].sort((x, y) => x - y);
}
