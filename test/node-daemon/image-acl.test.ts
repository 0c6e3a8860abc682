import test from 'ava';
import { checkImageAcl, metaInfoFromText } from '../../node-daemon/image-resolver.js';

const meta = (acl: string) => metaInfoFromText(`FORMAT: squashfs\nENTRY: ['/run.sh']\nCMD: ['a', 'b']\nWORKDIR: /w\nENV: A=1\n${acl}`, 'x.meta');

test('meta becomes the run config', (t) => {
  t.deepEqual(meta('').run, { entrypoint: ['/run.sh'], cmd: ['a', 'b'], workdir: '/w', env: ['A=1'] });
});

test('public images are open; private ones check uid, primary gid and supplementary groups', (t) => {
  t.notThrows(() => checkImageAcl(meta(''), { uid: 1, gid: 1, groups: [] }, 'img'));
  const priv = meta('USERACL: 1000\nGROUPACL: 500\n');
  t.notThrows(() => checkImageAcl(priv, { uid: 1000, gid: 1, groups: [] }, 'img'));
  t.notThrows(() => checkImageAcl(priv, { uid: 2, gid: 500, groups: [] }, 'img'));
  t.notThrows(() => checkImageAcl(priv, { uid: 2, gid: 2, groups: [7, 500] }, 'img'));
  t.throws(() => checkImageAcl(priv, { uid: 2, gid: 2, groups: [7] }, 'docker:x:1'), { message: /permission denied to image docker:x:1/ });
});

test('a broken meta file is a config error naming the file', (t) => {
  t.throws(() => metaInfoFromText('ENTRY: x\n', '/images/abc.meta'), { message: /^\/images\/abc\.meta: .*no FORMAT/ });
});
