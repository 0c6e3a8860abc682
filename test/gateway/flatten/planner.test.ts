/** OCI flattening rules, checked on headers alone (no tar, no root). */
import test from 'ava';
import { FlattenPlanner, NeedFullIndex } from '../../../gateway/flatten/planner.js';
import { LayerIndex } from '../../../gateway/flatten/layer-index.js';
import { PathDb } from '../../../gateway/flatten/path-db.js';
import type { EntryHeader, EntryKind } from '../../../gateway/flatten/entry.js';

type Spec = string | [string, EntryKind, string?];

function header(s: Spec): EntryHeader {
  if (typeof s !== 'string') return { name: s[0], kind: s[1], linkname: s[2] ?? '' };
  return s.endsWith('/') ? { name: s, kind: 'dir' } : { name: s, kind: 'file' };
}

interface Plan {
  materialise: { layer: number; ordinal: number; path: string }[];
  links: { path: string; target: string }[];
}
interface Result {
  emitted: string[];
  dropped: Record<string, string>;
  plan: Plan;
}

/** Streams the layers through a planner the way the converter does. */
function flatten(layers: Spec[][], indexBase = false): Result {
  const paths = new PathDb(':memory:');
  try {
    return flattenIn(paths, layers, indexBase);
  } finally {
    paths.close();
  }
}

function flattenIn(paths: PathDb, layers: Spec[][], indexBase: boolean): Result {
  const headers = layers.map((l) => l.map(header));
  const indexes = headers.map((hs, i) => {
    if (i === 0 && !indexBase) return null;
    const index = new LayerIndex(paths, i);
    hs.forEach((h, ordinal) => index.add(ordinal, h));
    return index;
  });
  const planner = new FlattenPlanner(paths, indexes);
  const result: Result = { emitted: [], dropped: {}, plan: { materialise: [], links: [] } };
  headers.forEach((hs, layer) => {
    planner.beginLayer(layer);
    hs.forEach((h, ordinal) => {
      const d = planner.decide(layer, ordinal, h);
      if (d.action === 'emit') result.emitted.push(`${layer}:${d.path}`);
      if (d.action === 'drop') result.dropped[d.path] = d.reason;
    });
  });
  const plan = planner.finish();
  result.plan = {
    materialise: layers.flatMap((_, layer) => [...plan.materialise(layer)].map((m) => ({ layer, ...m }))),
    links: [...plan.links()],
  };
  return result;
}

test('upper entries replace lower ones; directories merge', (t) => {
  const r = flatten([
    ['etc/', 'etc/a', 'etc/b'],
    ['etc/', 'etc/a'],
  ]);
  t.deepEqual(r.emitted, ['0:etc/b', '1:etc', '1:etc/a']);
});

test('whiteouts remove a path and its subtree from lower layers only', (t) => {
  const r = flatten([['d/', 'd/x', 'd/y/', 'd/y/z', 'f'], ['d/.wh.y', '.wh.f', 'f2'], ['.wh.d']]);
  t.deepEqual(r.emitted, ['1:f2']);
  const same = flatten([['a'], ['b', '.wh.b', '.wh.a']]);
  t.deepEqual(same.emitted, ['1:b'], 'a whiteout does not hide an entry of its own layer');
});

test("an opaque directory hides lower children but keeps itself and its own layer's children", (t) => {
  const r = flatten([['o/', 'o/old', 'o/sub/', 'o/sub/deep', 'keep'], ['o/', 'o/.wh..wh..opq', 'o/new'], ['o/newer']]);
  t.deepEqual(r.emitted, ['0:keep', '1:o', '1:o/new', '2:o/newer']);
  const root = flatten([
    ['a', 'b/'],
    ['.wh..wh..opq', 'c'],
  ]);
  t.deepEqual(root.emitted, ['1:c'], 'an opaque root hides the whole lower image');
});

test('a file replacing a directory removes its subtree, and the reverse', (t) => {
  const r = flatten([
    ['d/', 'd/x', 'f'],
    ['d', 'f/', 'f/y'],
  ]);
  t.deepEqual(r.emitted, ['1:d', '1:f', '1:f/y']);
  const sym = flatten([['d/', 'd/x'], [['d', 'symlink', 'elsewhere']]]);
  t.deepEqual(sym.emitted, ['1:d']);
});

test('hard links keep the content their target had when they were made', (t) => {
  const r = flatten([['h/', 'h/orig', ['h/l1', 'hardlink', 'h/orig']], [['h/l2', 'hardlink', './h/orig']], ['h/orig']]);
  t.deepEqual(r.emitted, ['0:h', '2:h/orig']);
  t.deepEqual(r.plan.materialise, [{ layer: 0, ordinal: 1, path: 'h/l1' }]);
  t.deepEqual(r.plan.links, [{ path: 'h/l2', target: 'h/l1' }]);
});

test('hard links to a visible file point at it; links to links share the inode', (t) => {
  const r = flatten([['x', ['y', 'hardlink', 'x']], [['z', 'hardlink', 'y']]]);
  t.deepEqual(r.emitted, ['0:x']);
  t.deepEqual(r.plan.materialise, []);
  t.deepEqual(r.plan.links, [
    { path: 'y', target: 'x' },
    { path: 'z', target: 'x' },
  ]);
});

test('unsafe entries are dropped with a reason', (t) => {
  const r = flatten([
    [
      '/abs',
      '../up',
      'a/../../up2',
      ['evil', 'symlink', '/etc'],
      'file',
      ['dev/null', 'char-device'],
      ['dev/sda', 'block-device'],
      ['hl-abs', 'hardlink', '/etc/shadow'],
      ['hl-up', 'hardlink', '../x'],
      ['hl-missing', 'hardlink', 'nope'],
      ['hl-dir', 'hardlink', 'dir'],
      'dir/',
      'a/.wh.',
      ['run/fifo', 'fifo'],
      'dev/ok',
      ['empty', 'symlink', ''],
    ],
    ['evil/passwd', 'file/inside', ['evil/x', 'hardlink', 'file']],
  ]);
  t.deepEqual(Object.keys(r.dropped).sort(), [
    '../up',
    '/abs',
    'a/../../up2',
    'a/.wh.',
    'dev/null',
    'dev/sda',
    'empty',
    'evil/passwd',
    'evil/x',
    'file/inside',
    'hl-abs',
    'hl-dir',
    'hl-missing',
    'hl-up',
  ]);
  t.regex(r.dropped['evil/passwd'], /symbolic link "evil"/);
  t.regex(r.dropped['file/inside'], /"file" is not a directory/);
  t.regex(r.dropped['hl-missing'], /hard link target "nope"/);
  t.deepEqual(r.emitted, ['0:evil', '0:file', '0:dir', '0:run/fifo', '0:dev/ok']);
});

test('an entry through a symlink is dropped even when a later layer turns the link into a directory', (t) => {
  const r = flatten([[['s', 'symlink', '/etc']], ['s/passwd'], ['s/', 's/ok']]);
  t.deepEqual(Object.keys(r.dropped), ['s/passwd']);
  t.deepEqual(r.emitted, ['2:s', '2:s/ok']);
});

test('a base layer holding a path twice asks for a full index, which then gives tar semantics', (t) => {
  t.throws(() => flatten([['a', 'b', 'a'], ['c']]), { instanceOf: NeedFullIndex });
  t.throws(() => flatten([['d/x', 'd'], ['c']]), { instanceOf: NeedFullIndex });
  const r = flatten([['a', 'b', 'a', 'd/', 'd/x', 'd'], ['c']], true);
  t.deepEqual(r.emitted, ['0:b', '0:a', '0:d', '1:c']);
});

test('root entries: the topmost wins, a non-directory root is refused', (t) => {
  t.deepEqual(flatten([['./', 'a'], ['./']]).emitted, ['0:a', '1:']);
  t.deepEqual(Object.keys(flatten([[['.', 'symlink', '/']]]).dropped), ['./']);
});
