import test from 'ava';
import { normaliseEntryPath, normaliseLinkTarget, ancestorsOf } from '../../../gateway/flatten/path-safety.js';
import { whiteoutMarker } from '../../../gateway/flatten/whiteout.js';

test('member names are normalised to image-relative paths', (t) => {
  const ok = (name: string) => {
    const r = normaliseEntryPath(name);
    return r.ok ? r.path : `!${r.reason}`;
  };
  t.is(ok('./etc/passwd'), 'etc/passwd');
  t.is(ok('etc//x/./y/'), 'etc/x/y');
  t.is(ok('./'), '');
  t.is(ok('.'), '');
  t.is(ok('ünïcødé/😀'), 'ünïcødé/😀');
  t.is(ok('a..b/..c'), 'a..b/..c', 'dots inside a name are fine');
});

test('absolute names, ".." components and NUL bytes are refused', (t) => {
  for (const name of ['/etc/passwd', '../x', 'a/../../x', 'a/b/..', './..', 'a\0b']) {
    t.false(normaliseEntryPath(name).ok, name);
  }
  t.false(normaliseLinkTarget('/etc/shadow').ok);
  t.false(normaliseLinkTarget('x/../../y').ok);
  t.false(normaliseLinkTarget('./').ok, 'a hard link to the root');
  t.deepEqual(normaliseLinkTarget('./usr/bin/x'), { ok: true, path: 'usr/bin/x' });
});

test('ancestors are listed outermost first', (t) => {
  t.deepEqual(ancestorsOf('a/b/c'), ['a', 'a/b']);
  t.deepEqual(ancestorsOf('a'), []);
});

test('whiteout markers are recognised', (t) => {
  t.deepEqual(whiteoutMarker('etc/.wh.passwd'), { kind: 'whiteout', target: 'etc/passwd' });
  t.deepEqual(whiteoutMarker('.wh.top'), { kind: 'whiteout', target: 'top' });
  t.deepEqual(whiteoutMarker('opt/.wh..wh..opq'), { kind: 'opaque', dir: 'opt' });
  t.deepEqual(whiteoutMarker('.wh..wh..opq'), { kind: 'opaque', dir: '' });
  t.deepEqual(whiteoutMarker('a/.wh.'), { kind: 'invalid' });
  t.deepEqual(whiteoutMarker('a/.wh..'), { kind: 'invalid' });
  t.is(whiteoutMarker('a/x.wh.y'), null);
});

test('the root entry "/" that umoci writes is the image root, not an absolute path', (t) => {
  t.deepEqual(normaliseEntryPath('/'), { ok: true, path: '' });
  t.deepEqual(normaliseEntryPath('//'), { ok: true, path: '' });
  t.false(normaliseEntryPath('/etc').ok);
});
