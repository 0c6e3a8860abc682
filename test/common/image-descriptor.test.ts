import test from 'ava';
import {
  formatImageDescriptor,
  isImageId,
  parseImageDescriptor,
  toImageId,
  withImplicitLatest,
} from '../../common/image-descriptor.js';
import { ShifterError } from '../../common/errors.js';

const HEX = 'a'.repeat(64);

test('upstream examples', (t) => {
  t.deepEqual(parseImageDescriptor('docker:ubuntu:14.04'), { type: 'docker', tag: 'ubuntu:14.04' });
  t.deepEqual(parseImageDescriptor('ubuntu:14.04'), { type: 'docker', tag: 'ubuntu:14.04' });
  t.deepEqual(parseImageDescriptor(`id:${HEX}`), { type: 'id', tag: HEX });
  t.deepEqual(parseImageDescriptor('local:/'), { type: 'local', tag: '/' });
  t.deepEqual(parseImageDescriptor('custom:load_test:v1'), { type: 'custom', tag: 'load_test:v1' });
});

test('defaultImageType applies when the prefix is not a type', (t) => {
  t.deepEqual(parseImageDescriptor('load_test:v1', 'custom'), { type: 'custom', tag: 'load_test:v1' });
  t.deepEqual(parseImageDescriptor('ubuntu', 'docker'), { type: 'docker', tag: 'ubuntu:latest' });
  t.deepEqual(
    parseImageDescriptor('Docker:ubuntu'),
    { type: 'docker', tag: 'Docker:ubuntu' },
    'types are case-sensitive, as upstream',
  );
});

test('docker gets :latest only when the last path component has no tag or digest', (t) => {
  t.is(parseImageDescriptor('docker:ubuntu').tag, 'ubuntu:latest');
  t.is(parseImageDescriptor('docker:me/app').tag, 'me/app:latest');
  t.is(parseImageDescriptor('registry:5000/team/app').tag, 'registry:5000/team/app:latest');
  t.is(parseImageDescriptor('registry:5000/team/app:1.0').tag, 'registry:5000/team/app:1.0');
  t.is(parseImageDescriptor(`docker:app@sha256:${HEX}`).tag, `app@sha256:${HEX}`);
  t.is(parseImageDescriptor('custom:thing').tag, 'thing', 'custom images get no implicit tag');
  t.is(withImplicitLatest('a/b'), 'a/b:latest');
});

test('invalid characters are refused with the character named, not silently dropped', (t) => {
  const cases: [string, RegExp][] = [
    ['docker:ubuntu;rm', /contains ';', which is not allowed/],
    ['ubuntu 22.04', /contains a space/],
    ['docker:ubu$ntu', /contains '\$'/],
    ['custom:a/b', /contains '\/'.*only allowed in docker and local images/],
    ['docker:ubuntu\u001b[2J', /contains the character \\u001b/],
    ['docker:a/../b', /'\.\.' path component/],
  ];
  for (const [input, re] of cases) {
    const e = t.throws(() => parseImageDescriptor(input), { instanceOf: ShifterError }, input);
    t.is(e?.code, 'BAD_ARGUMENT');
    t.regex(e?.message ?? '', re, input);
    t.false(/\u001b/.test(e?.message ?? ''), 'control characters never reach the message');
  }
});

test('empty input, empty tags, bad ids and relative local paths are refused', (t) => {
  t.regex(t.throws(() => parseImageDescriptor('  '))?.message ?? '', /no image given/);
  t.regex(t.throws(() => parseImageDescriptor('docker:'))?.message ?? '', /empty tag/);
  t.regex(t.throws(() => parseImageDescriptor('id:'))?.message ?? '', /empty id/);
  t.regex(
    t.throws(() => parseImageDescriptor('id:abc123'))?.message ?? '',
    /not a valid image id: an id is 64 lowercase hex/,
  );
  t.regex(t.throws(() => parseImageDescriptor(`id:${'A'.repeat(64)}`))?.message ?? '', /not a valid image id/);
  t.regex(t.throws(() => parseImageDescriptor('local:home/me'))?.message ?? '', /must be an absolute path/);
});

test('ImageId: 64 lowercase hex only', (t) => {
  t.true(isImageId(HEX));
  t.false(isImageId(HEX.slice(1)));
  t.false(isImageId(`../${HEX}`));
  t.is<string, string>(toImageId(HEX), HEX);
  t.throws(() => toImageId('nope'), { instanceOf: ShifterError });
});

test('formatImageDescriptor round-trips', (t) => {
  for (const s of ['docker:ubuntu:14.04', 'custom:load_test:v1', `id:${HEX}`, 'local:/']) {
    t.is(formatImageDescriptor(parseImageDescriptor(s)), s);
  }
});
