import test from 'ava';
import {
  accessFromLists,
  combineAccess,
  mayUse,
  PUBLIC_ACCESS,
  type AccessCaller,
  type ImageAccess,
} from '../../common/image-access.js';

const alice: AccessCaller = { uid: 1000, gid: 1000, groups: [1000, 50] };

test('empty lists are public; a restricted image admits its uids, primary gid and supplementary gids only', (t) => {
  t.deepEqual(accessFromLists([], []), PUBLIC_ACCESS);
  t.true(mayUse(PUBLIC_ACCESS, null));
  const byUser = accessFromLists([1000], []);
  t.true(mayUse(byUser, alice));
  t.false(mayUse(byUser, null), 'an anonymous caller may use public images only');
  t.false(mayUse(byUser, { uid: 2000, gid: 2000, groups: [] }));
  t.true(mayUse(accessFromLists([], [50]), alice), 'a supplementary group');
  t.true(mayUse(accessFromLists([], [7]), { uid: 2, gid: 7, groups: [] }), 'the primary group');
});

test('the union is public when any access is, else every listed uid and gid once', (t) => {
  t.deepEqual(combineAccess(accessFromLists([5], []), PUBLIC_ACCESS), PUBLIC_ACCESS);
  const union = combineAccess(accessFromLists([5, 1], [9]), accessFromLists([1, 3], []));
  t.deepEqual(union, { kind: 'restricted', users: [1, 3, 5], groups: [9] });
});

test('a caller passes the union exactly when they pass one of its parts', (t) => {
  let seed = 42;
  const next = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const ids = (n: number) => Array.from({ length: next(n) }, () => next(8));
  const access = (): ImageAccess => (next(5) === 0 ? PUBLIC_ACCESS : accessFromLists(ids(3), ids(3)));
  for (let i = 0; i < 2000; i++) {
    const parts = Array.from({ length: 1 + next(4) }, access);
    const caller = next(6) === 0 ? null : { uid: next(8), gid: next(8), groups: ids(3) };
    const union = combineAccess(parts[0], ...parts.slice(1));
    t.is(
      mayUse(union, caller),
      parts.some((p) => mayUse(p, caller)),
      JSON.stringify({ parts, caller }),
    );
  }
});
