import test from 'ava';
import {
  parseVolume,
  parseVolumeList,
  parseVolumeTexts,
  volumeSignature,
  parseByteSize,
} from '../../../node-daemon/command/volumes.js';

test('from:to with flags, normalized paths', (t) => {
  const v = parseVolume('/scratch//run1/:/data:ro', 'user');
  t.is(v.source, '/scratch/run1');
  t.is(v.target, '/data');
  t.true(v.readOnly);
  t.is(v.propagation, undefined);
});

test('a list separated by ; with surrounding quotes', (t) => {
  const l = parseVolumeList('"/a:/b;/c:/d:ro;"', 'user');
  t.deepEqual(
    l.map((v) => [v.source, v.target, v.readOnly]),
    [
      ['/a', '/b', false],
      ['/c', '/d', true],
    ],
  );
});

test('validation: absolute, no .., no repeated flag, not slave+private', (t) => {
  t.throws(() => parseVolume('rel:/data', 'user'), { message: /not absolute/ });
  t.throws(() => parseVolume('/a/../etc:/data', 'user'), { message: /'\.\.'/ });
  t.throws(() => parseVolume('/a:/data:ro:ro', 'user'), { message: /repeated/ });
  t.throws(() => parseVolume('/a:/b:slave:private', 'site'), { message: /cannot both/ });
  t.throws(() => parseVolume('/a', 'user'), { message: /write it as/ });
  t.throws(() => parseVolume('/a\n:/b', 'user'), { message: /control character/ });
});

test('user targets may not shadow site-controlled trees; /var/tmp is allowed', (t) => {
  for (const target of [
    '/',
    '/etc',
    '/etc/passwd',
    '/var',
    '/var/lib',
    '/opt',
    '/opt/udiImage/bin',
    '/proc',
    '/dev/shm',
    '/sys',
  ]) {
    t.throws(() => parseVolume(`/src:${target}`, 'user'), { message: /(would hide|cannot mount over)/ }, target);
  }
  t.is(parseVolume('/src:/var/tmp', 'user').target, '/var/tmp');
  t.is(parseVolume('/src:/etcetera', 'user').target, '/etcetera');
  t.is(parseVolume('/src:/opt/app', 'user').target, '/opt/app');
});

test('user flags are limited to ro and perNodeCache; site may use all', (t) => {
  t.throws(() => parseVolume('/a:/b:rec', 'user'), { message: /not allowed in user volumes/ });
  t.throws(() => parseVolume('/a:/b:bogus', 'site'), { message: /unknown/ });
  const s = parseVolume('/global:/global:rec:slave', 'site');
  t.true(s.recursive);
  t.is(s.propagation, 'slave');
  t.is(parseVolume('/home', 'site').target, '/home');
  t.throws(() => parseVolume('/x:/etc/passwd', 'site'), { message: /siteFs may not/ });
});

test('perNodeCache options and sizes', (t) => {
  const v = parseVolume('/a:/cache:perNodeCache=size=10G,bs=4k', 'user');
  t.deepEqual(v.perNodeCache, { sizeBytes: 10 * 1024 ** 3, blockSizeBytes: 4096, method: 'loop', fs: 'xfs' });
  t.throws(() => parseVolume('/a:/c:perNodeCache=bs=4k', 'user'), { message: /needs a size/ });
  t.throws(() => parseVolume('/a:/c:perNodeCache=size=lots', 'user'), { message: /not a size/ });
  t.is(parseVolume('/a:/c:perNodeCache=size=1G,fs=ext4', 'user').perNodeCache?.fs, 'ext4');
  t.throws(() => parseVolume('/a:/c:perNodeCache=size=1G,fs=btrfs', 'user'), { message: /xfs or ext4/ });
  t.is(parseByteSize('512'), 512);
  t.is(parseByteSize('2m'), 2 * 1024 * 1024);
});

test('the same target twice is refused', (t) => {
  t.throws(() => parseVolumeTexts(['/a:/data', '/b:/data'], 'user'), { message: /more than one volume/ });
});

test('signature is order independent and normalized', (t) => {
  const a = volumeSignature(parseVolumeTexts(['/x/:/data:ro', '/y:/in'], 'user'));
  const b = volumeSignature(parseVolumeTexts(['/y:/in;/x:/data:ro'], 'user'));
  t.is(a, b);
  t.is(a, '/x:/data:ro;/y:/in');
  t.not(a, volumeSignature(parseVolumeTexts(['/x:/data', '/y:/in'], 'user')));
});
