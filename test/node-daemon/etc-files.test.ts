import test from 'ava';
import {
  buildEtcEntries,
  filterGroups,
  renderPasswd,
  parsePasswdLine,
  parseGroupLine,
  lookupGroups,
  lookupUserByUid,
  NSSWITCH_CONF,
} from '../../node-daemon/etc-files.js';

const user = { name: 'alice', uid: 1001, gid: 1001, gecos: 'Alice', home: '/home/alice', shell: '/bin/bash' };

function byTarget(entries: ReturnType<typeof buildEtcEntries>): Map<string, string> {
  return new Map(entries.map((e) => [e.target, e.kind === 'file' ? e.content : `-> ${e.linkTo}`]));
}

test('dynamic passwd/group/nsswitch for the caller, host files, empty shadow, mtab link', (t) => {
  const files = byTarget(
    buildEtcEntries({
      users: [user, { name: 'sshd', uid: 101, gid: 65534, gecos: '', home: '/run/sshd', shell: '/usr/sbin/nologin' }],
      groups: [
        { name: 'alice', gid: 1001, members: [] },
        { name: 'proj', gid: 2000, members: ['bob', 'alice'] },
      ],
      userName: 'alice',
      maxGroupCount: 31,
      etcPathFiles: undefined,
      hostHosts: '127.0.0.1 localhost\n',
      hostResolvConf: 'nameserver 10.0.0.1\n',
    }),
  );
  t.is(
    files.get('/etc/passwd'),
    'alice:x:1001:1001:Alice:/home/alice:/bin/bash\nsshd:x:101:65534::/run/sshd:/usr/sbin/nologin\n',
  );
  t.is(files.get('/etc/group'), 'alice:x:1001:alice\nproj:x:2000:alice\n', 'other members are not leaked');
  t.is(files.get('/etc/nsswitch.conf'), NSSWITCH_CONF);
  t.regex(files.get('/etc/nsswitch.conf')!, /^passwd: files$/m);
  t.is(files.get('/etc/hosts'), '127.0.0.1 localhost\n');
  t.is(files.get('/etc/resolv.conf'), 'nameserver 10.0.0.1\n');
  t.is(files.get('/etc/shadow'), '');
  t.is(files.get('/etc/mtab'), '-> /proc/mounts');
});

test('etcPath mode copies every file and filters group membership', (t) => {
  const files = byTarget(
    buildEtcEntries({
      users: [],
      groups: [],
      userName: 'alice',
      maxGroupCount: 1,
      etcPathFiles: new Map([
        ['passwd', 'alice:x:1001:1001::/h:/bin/sh\n'],
        ['group', 'a:x:1:alice,bob\nb:x:2:alice\nc:x:3:bob\n'],
        ['nsswitch.conf', 'passwd: files\n'],
      ]),
      hostHosts: undefined,
      hostResolvConf: undefined,
    }),
  );
  t.is(files.get('/etc/group'), 'a:x:1:alice\nb:x:2:\nc:x:3:\n', 'at most maxGroupCount memberships');
  t.is(files.get('/etc/passwd'), 'alice:x:1001:1001::/h:/bin/sh\n');
  t.false(files.has('/etc/hosts'));
});

test('maxGroupCount 0 lists no memberships (upstream default)', (t) => {
  t.is(filterGroups([{ name: 'alice', gid: 5, members: ['alice'] }], 'alice', 0), 'alice:x:5:\n');
});

test('NSS fields cannot inject extra lines or fields', (t) => {
  const text = renderPasswd([{ ...user, gecos: 'evil\nroot:x:0:0::/:/bin/sh', shell: '/bin/sh:x' }]);
  t.is(text.split('\n').length, 2);
  t.is(text.split(':').length, 7);
});

test('passwd and group line parsers', (t) => {
  t.deepEqual(parsePasswdLine('bob:x:5:6:Bob B:/home/bob:/bin/zsh'), {
    name: 'bob',
    uid: 5,
    gid: 6,
    gecos: 'Bob B',
    home: '/home/bob',
    shell: '/bin/zsh',
  });
  t.is(parsePasswdLine('broken'), undefined);
  t.deepEqual(parseGroupLine('g:x:7:a, b'), { name: 'g', gid: 7, members: ['a', 'b'] });
  t.is(parseGroupLine('g:x:notanumber:'), undefined);
});

test('groups are looked up together; an unknown gid gets a placeholder name', async (t) => {
  const groups = await lookupGroups([0, 987654, 65534]);
  t.deepEqual(
    groups.map((g) => [g.gid, g.name]),
    [
      [0, 'root'],
      [987654, 'gid987654'],
      [65534, 'nogroup'],
    ],
  );
  const user = await lookupUserByUid(0);
  t.is(user.name, 'root');
  await t.throwsAsync(lookupUserByUid(987654), { message: /uid 987654 has no passwd entry/ });
});
