import test from 'ava';
import { tar2sqfsSettings } from '../../../gateway/convert/converter-options.js';

const tail = ['--no-xattr', '--no-skip', '--quiet', '--defaults', 'uid=0,gid=0,mode=0755'];

test('defaults: zstd level 3, two jobs, no xattrs', (t) => {
  t.deepEqual(tar2sqfsSettings(undefined, 8), {
    args: ['--compressor', 'zstd', '--comp-extra', 'level=3', '--num-jobs', '2', ...tail],
    forceUid: null,
    forceGid: null,
  });
  t.is(tar2sqfsSettings([], 1).args[5], '1', 'one job on one cpu');
});

test('mksquashfs options are translated', (t) => {
  const s = tar2sqfsSettings(
    ['-comp gzip', '-Xcompression-level', '9', '-b', '1M', '-no-xattrs', '-all-root', '-processors', '4'],
    2,
  );
  t.deepEqual(s.args, [
    '--compressor',
    'gzip',
    '--comp-extra',
    'level=9',
    '--num-jobs',
    '4',
    '--block-size',
    '1048576',
    ...tail,
  ]);
  t.is(s.forceUid, 0);
  t.is(s.forceGid, 0);
  t.deepEqual(tar2sqfsSettings(['-comp', 'lz4', '-Xhc'], 2).args.slice(0, 4), [
    '--compressor',
    'lz4',
    '--comp-extra',
    'hc',
  ]);
  t.deepEqual(tar2sqfsSettings(['--compressor', 'xz'], 2).args.slice(0, 3), ['--compressor', 'xz', '--num-jobs']);
  t.deepEqual(tar2sqfsSettings(['-force-uid', '1000'], 2).forceUid, 1000);
});

test('unknown or malformed options are refused by name', (t) => {
  t.throws(() => tar2sqfsSettings(['-sort', 'file'], 2), {
    code: 'BAD_CONFIG',
    message: /-sort is not a known option/,
  } as never);
  t.throws(() => tar2sqfsSettings(['-comp', 'brotli'], 2), { message: /unknown compressor "brotli"/ });
  t.throws(() => tar2sqfsSettings(['-b', '3000'], 2), { message: /-b must be a power of two/ });
  t.throws(() => tar2sqfsSettings(['-comp', 'gzip', '-Xcompression-level', '12'], 2), { message: /1\.\.9 for gzip/ });
  t.throws(() => tar2sqfsSettings(['-Xcompression-level'], 2), { message: /needs a value/ });
  t.throws(() => tar2sqfsSettings(['-xattrs'], 2), { message: /never copied/ });
  t.throws(() => tar2sqfsSettings(['--root-becomes', 'x'], 2), { message: /--root-becomes is not a known option/ });
});
