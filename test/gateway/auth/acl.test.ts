import test from 'ava';
import { canRead, listedRecord, parseIdList, readableTags, sameIds, withRequester } from '../../../gateway/auth/acl.js';
import { credentialsFor, tokensFromPayload, type Identity } from '../../../gateway/auth/session.js';
import { newPullRecord, type ImageRecord, type PullGrant, type RecordKey } from '../../../gateway/store/record.js';

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

const alice: Identity = { user: 'alice', uid: 1000, group: 'alice', gid: 1000, gids: [1000] };
const bob: Identity = { user: 'bob', uid: 2000, group: 'bob', gid: 2000, gids: [2000, 60] };

type Union = Pick<ImageRecord, 'private' | 'userACL' | 'groupACL'>;

function image(tags: string[], grants: PullGrant[], union: Union): ImageRecord {
  const base = newPullRecord('k' as RecordKey, {
    system: 's',
    itype: 'docker',
    pulltag: tags[0] ?? 'x:1',
    requesterUid: null,
    userACL: [],
    groupACL: [],
    format: 'squashfs',
    credentialed: false,
    now: 1,
  });
  return { ...base, status: 'READY', id: 'a'.repeat(64), tag: tags, grants, ...union };
}

const grant = (tag: string, uid: number | null, userACL: number[], groupACL: number[] = []): PullGrant => ({
  tag,
  uid,
  private: userACL.length + groupACL.length > 0,
  userACL,
  groupACL,
});

test("a list names only the tags the caller may use, with those tags' access", (t) => {
  const rec = image(['app:public', 'app:alice'], [grant('app:public', 1000, []), grant('app:alice', 1000, [1000])], {
    private: false,
    userACL: [],
    groupACL: [],
  });
  t.deepEqual(readableTags(rec, null), ['app:public']);
  t.deepEqual(readableTags(rec, alice), ['app:public', 'app:alice']);
  const seenByBob = listedRecord(rec, bob);
  t.deepEqual([seenByBob?.tag, seenByBob?.userACL], [['app:public'], []]);

  const grants = [grant('app:alice', 1000, [1000]), grant('app:group', 1000, [1000], [60])];
  const privateOnly = image(['app:alice', 'app:group'], grants, { private: true, userACL: [1000], groupACL: [60] });
  t.is(listedRecord(privateOnly, null), null);
  const viaGroup = listedRecord(privateOnly, bob);
  t.deepEqual([viaGroup?.tag, viaGroup?.userACL, viaGroup?.groupACL], [['app:group'], [1000], [60]]);
});

test('a tag pulled by two users has the union of their grants; an image no tag names is listed by its access', (t) => {
  const rec = image(['app:1'], [grant('app:1', 1000, [1000]), grant('app:1', 2000, [2000])], {
    private: true,
    userACL: [1000, 2000],
    groupACL: [],
  });
  t.deepEqual(readableTags(rec, bob), ['app:1']);
  t.deepEqual(listedRecord(rec, alice)?.userACL, [1000, 2000]);
  const orphan = image([], [grant('gone:1', 1000, [1000])], { private: true, userACL: [1000], groupACL: [] });
  t.deepEqual(listedRecord(orphan, alice)?.tag, []);
  t.is(listedRecord(orphan, bob), null);
});
