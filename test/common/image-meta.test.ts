import test from 'ava';
import { formatImageMeta, parseImageMeta, type ImageMeta } from '../../common/image-meta.js';

const base: ImageMeta = {
  format: 'squashfs',
  entrypoint: null,
  cmd: null,
  workdir: null,
  env: [],
  userAcl: [],
  groupAcl: [],
  labels: {},
  user: null,
};

test('upstream layout: FORMAT, ENTRY, CMD, WORKDIR, ACLs, ENV lines, USER, LABEL lines', (t) => {
  const text = formatImageMeta({
    ...base,
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo', "it's"],
    workdir: '/work',
    env: ['PATH=/usr/bin', 'A=b=c'],
    userAcl: [1000, 1001],
    groupAcl: [50],
    user: 'nobody',
    labels: { 'org.example': 'v' },
  });
  t.is(
    text,
    [
      'FORMAT: squashfs',
      "ENTRY: ['/bin/sh', '-c']",
      "CMD: ['echo', 'it\\'s']",
      'WORKDIR: /work',
      'USERACL: 1000,1001',
      'GROUPACL: 50',
      'ENV: PATH=/usr/bin',
      'ENV: A=b=c',
      'USER: nobody',
      'LABEL: ["org.example","v"]',
      '',
    ].join('\n'),
  );
});

test('round trip with quotes, backslashes, unicode, newlines, = and : in values', (t) => {
  const meta: ImageMeta = {
    ...base,
    entrypoint: [
      "it's",
      'say "hi"',
      'back\\slash',
      'tab\there',
      'new\nline',
      'ünïcødé 😀',
      '',
      'a, b',
      "']",
      '\x01\x7f',
    ],
    cmd: [],
    workdir: '/päth with space',
    env: ['X=a=b', 'Q="quoted"', "S='single'", 'B=back\\slash\\n', 'U=😀', 'EMPTY='],
    userAcl: [0, 4294967295],
    groupAcl: [7],
    labels: { 'k=with:colon': 'multi\nline "value"', ü: '' },
    user: '1000:1000',
  };
  t.deepEqual(parseImageMeta(formatImageMeta(meta)), meta);
  t.deepEqual(parseImageMeta(formatImageMeta(base)), base);
});

test("upstream-written files: Python 2 u'' lists, double-quoted items, bare strings, unknown keys", (t) => {
  const m = parseImageMeta(
    [
      'FORMAT: squashfs',
      "ENTRY: [u'/bin/sh', u'-c', u'caf\\xe9']",
      "CMD: ['echo', \"it's\"]",
      'WORKDIR: /',
      'ENV: A=1',
      'PRIVATE: True',
      'ENV: B=2',
    ].join('\n'),
  );
  t.deepEqual(m.entrypoint, ['/bin/sh', '-c', 'café']);
  t.deepEqual(m.cmd, ['echo', "it's"]);
  t.deepEqual(m.env, ['A=1', 'B=2']);
  t.deepEqual(parseImageMeta('FORMAT: squashfs\nENTRY: /bin/sh -c\r\n').entrypoint, ['/bin/sh -c']);
  t.deepEqual(parseImageMeta("FORMAT: squashfs\nCMD: ['unterminated\n").cmd, ["['unterminated"]);
});

test('values that would forge extra lines are refused, bad files are named', (t) => {
  t.throws(() => formatImageMeta({ ...base, env: ['EVIL=x\nUSERACL: 0'] }), {
    message: /variable EVIL contains a line break/,
  });
  t.throws(() => formatImageMeta({ ...base, workdir: '/a\r' }), { message: /WORKDIR contains a line break/ });
  t.throws(() => formatImageMeta({ ...base, userAcl: [-1] }), { message: /USERACL holds -1/ });
  t.throws(() => parseImageMeta('FORMAT: cramfs\n'), { message: /only squashfs/ });
  t.throws(() => parseImageMeta('ENV: A=1\n'), { message: /no FORMAT line/ });
  t.throws(() => parseImageMeta('FORMAT: squashfs\nUSERACL: 1,x\n'), { message: /"x", which is not a numeric id/ });
});

test('CHUNKINDEX carries the chunk index digest, written last and read back; a bad one is refused', (t) => {
  const digest = 'ab'.repeat(32);
  const text = formatImageMeta({ ...base, chunkIndex: digest });
  t.true(text.endsWith(`CHUNKINDEX: ${digest}\n`));
  t.is(parseImageMeta(text).chunkIndex, digest);
  t.is(parseImageMeta(formatImageMeta(base)).chunkIndex, undefined);
  t.throws(() => formatImageMeta({ ...base, chunkIndex: 'sha256:12' }), { message: /not a sha256 hex digest/ });
  t.throws(() => parseImageMeta('FORMAT: squashfs\nCHUNKINDEX: zz\n'), { message: /CHUNKINDEX.*re-pull/ });
});
