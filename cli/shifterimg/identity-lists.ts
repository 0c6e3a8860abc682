/**
 * `-u/--user` and `-g/--group` lists for pull ACLs: comma-separated names or numbers, the option
 * repeatable. Names are resolved through NSS (`getent`) so LDAP/SSSD users work like local ones.
 * Upstream dropped names it could not resolve; here an unknown name is an error, because a typo
 * would otherwise silently make a private image unreadable by the person it was meant for.
 */
import { execFile } from 'node:child_process';
import { ShifterError } from '../../common/errors.js';

export type IdKind = 'user' | 'group';

/** Splits repeated comma lists into tokens, rejecting empty entries like `a,,b`. */
export function splitIdLists(values: readonly string[], kind: IdKind): string[] {
  const tokens: string[] = [];
  for (const value of values) {
    for (const raw of value.split(',')) {
      const token = raw.trim();
      if (token.length === 0) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `empty entry in the ${kind} list '${value}': write names or numbers separated by commas`,
        );
      }
      tokens.push(token);
    }
  }
  return tokens;
}

export type IdLookup = (kind: IdKind, name: string) => Promise<number | undefined>;

/** Numbers pass through; names go through `lookup`. Result is de-duplicated, in input order. */
export async function resolveIds(tokens: readonly string[], kind: IdKind, lookup: IdLookup): Promise<number[]> {
  const ids: number[] = [];
  for (const token of tokens) {
    let id: number | undefined;
    if (/^\d+$/.test(token)) {
      id = Number(token);
      if (!Number.isSafeInteger(id) || id > 0xfffffffe) {
        throw new ShifterError('BAD_ARGUMENT', `${kind} id ${token} is out of range`);
      }
    } else {
      id = await lookup(kind, token);
      if (id === undefined) {
        throw new ShifterError(
          'BAD_ARGUMENT',
          `unknown ${kind} '${token}' in --${kind}: give an existing ${kind} name or a numeric id`,
        );
      }
    }
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** `getent passwd|group <name>`; exit status 2 means "no such entry". */
export const getentLookup: IdLookup = (kind, name) =>
  new Promise((resolve, reject) => {
    execFile('getent', [kind === 'user' ? 'passwd' : 'group', '--', name], (err, stdout) => {
      if (err) {
        if ((err as { code?: unknown }).code === 2) {
          resolve(undefined);
          return;
        }
        reject(new ShifterError('BAD_ARGUMENT', `cannot look up ${kind} '${name}': ${err.message}`, err));
        return;
      }
      const field = stdout.split('\n')[0]?.split(':')[2];
      resolve(field !== undefined && /^\d+$/.test(field) ? Number(field) : undefined);
    });
  });
