/** The URL's tag is parsed once, at the API edge, into the typed reference the pull uses. */
import test from 'ava';
import { lookupTarget, pullTarget } from '../../../gateway/api/image-target.js';

const params = (imgtype: 'docker' | 'custom' | 'id', tag: string) => ({ system: 'sys', imgtype, '*': tag });

test('a pull carries the record tag (":latest" added) and the parsed reference', (t) => {
  t.deepEqual(pullTarget(params('docker', 'team/app/'), 'index.docker.io'), {
    itype: 'docker',
    tag: 'team/app:latest',
    ref: { location: 'index.docker.io', repository: 'team/app', tag: 'latest', digest: null },
  });
  t.deepEqual(
    pullTarget(params('docker', '127.0.0.1:5000/a/b:1'), 'index.docker.io').ref,
    { location: '127.0.0.1:5000', repository: 'a/b', tag: '1', digest: null },
    'a registry port is not a tag (#156)',
  );
  t.deepEqual(pullTarget(params('docker', 'ubuntu'), 'index.docker.io').ref.repository, 'library/ubuntu');
});

test('a pull of an invalid reference or of another type is refused at the edge with the fix', (t) => {
  t.throws(() => pullTarget(params('docker', 'Bad Name'), 'index.docker.io'), {
    message: /invalid image reference "Bad Name:latest"/,
  });
  t.throws(() => pullTarget(params('custom', 'x'), 'index.docker.io'), {
    message: /type "custom" cannot be pulled; use type docker/,
  });
  t.throws(() => pullTarget(params('docker', '/'), 'index.docker.io'), {
    message: /image tag is missing from the URL/,
  });
});

test("lookups keep upstream's tags: custom gets :latest, id is taken as is, docker must parse", (t) => {
  t.deepEqual(lookupTarget(params('custom', 'thing'), 'x'), { itype: 'custom', tag: 'thing:latest' });
  t.deepEqual(lookupTarget(params('id', 'ab12'), 'x'), { itype: 'id', tag: 'ab12' });
  t.deepEqual(lookupTarget(params('docker', 'a/b:1/'), 'x'), { itype: 'docker', tag: 'a/b:1' });
  t.throws(() => lookupTarget(params('docker', 'a//b'), 'x'), { message: /empty path component/ });
});
