import test from 'ava';
import { canRead, parseIdList, sameIds, withRequester } from '../../../gateway/auth/acl.js';
import { credentialsFor, tokensFromPayload } from '../../../gateway/auth/session.js';

test('id lists from comma strings, numbers or arrays; bad ids are a client error', (t) => {
  t.deepEqual(parseIdList('1, 2,2', 'allowed_uids'), [1, 2]);
  t.deepEqual(parseIdList([3, '4'], 'allowed_uids'), [3, 4]);
  t.deepEqual(parseIdList(5, 'allowed_uids'), [5]);
  t.deepEqual(parseIdList(undefined, 'allowed_uids'), []);
  t.throws(() => parseIdList('alice', 'allowed_uids'), { message: /allowed_uids must be numeric ids/ });
  t.throws(() => parseIdList(-1, 'allowed_gids'), { message: /allowed_gids must be numeric ids/ });
});

test('the requester is added to non-empty ACLs only', (t) => {
  t.deepEqual(withRequester([5], 1000), [5, 1000]);
  t.deepEqual(withRequester([], 1000), []);
  t.true(sameIds([1, 2], [2, 1]));
  t.false(sameIds([1], [1, 2]));
});

test('read check: public, by uid, by any group, anonymous', (t) => {
  const who = { user: 'u', uid: 1000, group: 'g', gid: 100, gids: [100, 200] };
  t.true(canRead({ private: false, userACL: [5], groupACL: [] }, null));
  t.true(canRead({ private: true, userACL: [], groupACL: [] }, null));
  t.false(canRead({ private: true, userACL: [5], groupACL: [] }, null));
  t.true(canRead({ private: true, userACL: [1000], groupACL: [] }, who));
  t.true(canRead({ private: true, userACL: [], groupACL: [200] }, who));
  t.false(canRead({ private: true, userACL: [5], groupACL: [6] }, who));
});

test('authorized_locations: the location first, then default', (t) => {
  const tokens = tokensFromPayload('{"authorized_locations": {"default": "d:pw", "reg.example.org": "alice:s3:cret"}}');
  t.deepEqual(credentialsFor(tokens, 'reg.example.org'), { username: 'alice', password: 's3:cret' });
  t.deepEqual(credentialsFor(tokens, 'other'), { username: 'd', password: 'pw' });
  t.is(credentialsFor({}, 'other'), null);
  t.deepEqual(tokensFromPayload('not json'), {});
  t.throws(() => tokensFromPayload('{"authorized_locations": '), { message: /not valid JSON/ });
});
