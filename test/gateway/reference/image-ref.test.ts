import test from 'ava';
import { ShifterError } from '../../../common/errors.js';
import {
  formatImageReference,
  parseImageReference,
  referenceForManifest,
} from '../../../gateway/reference/image-ref.js';

const HUB = 'registry-1.docker.io';
const DIGEST = `sha256:${'ab'.repeat(32)}`;

test('a bare Docker Hub name gets library/ and :latest', (t) => {
  const ref = parseImageReference('ubuntu', HUB);
  t.deepEqual(ref, { location: HUB, repository: 'library/ubuntu', tag: 'latest', digest: null });
  t.is(formatImageReference(ref), 'registry-1.docker.io/library/ubuntu:latest');
  t.is(referenceForManifest(ref), 'latest');
});

test('the docker: type prefix is dropped', (t) => {
  t.deepEqual(parseImageReference('docker:ubuntu:14.04', 'index.docker.io'), {
    location: 'index.docker.io',
    repository: 'library/ubuntu',
    tag: '14.04',
    digest: null,
  });
});

test('a host with a port and a tag parses (upstream #156)', (t) => {
  const ref = parseImageReference('127.0.0.1:5000/a/b:1', HUB);
  t.deepEqual(ref, { location: '127.0.0.1:5000', repository: 'a/b', tag: '1', digest: null });
  t.is(formatImageReference(ref), '127.0.0.1:5000/a/b:1');
});

test('a host with a port and no tag gets latest, not the port as tag', (t) => {
  t.deepEqual(parseImageReference('registry.example.org:5000/team/app', HUB), {
    location: 'registry.example.org:5000',
    repository: 'team/app',
    tag: 'latest',
    digest: null,
  });
});

test('localhost is a registry host, and no library/ is added off Docker Hub', (t) => {
  t.deepEqual(parseImageReference('localhost/x', HUB), {
    location: 'localhost',
    repository: 'x',
    tag: 'latest',
    digest: null,
  });
  t.deepEqual(parseImageReference('myimage:2', 'registry.example.org'), {
    location: 'registry.example.org',
    repository: 'myimage',
    tag: '2',
    digest: null,
  });
});

test('a first component without . or : is part of the repository', (t) => {
  t.deepEqual(parseImageReference('myorg/app:v1.2-rc_3', HUB), {
    location: HUB,
    repository: 'myorg/app',
    tag: 'v1.2-rc_3',
    digest: null,
  });
});

test('an explicit docker.io location also gets library/', (t) => {
  t.is(parseImageReference('docker.io/busybox', HUB).repository, 'library/busybox');
});

test('digests: alone, or with a tag; the digest is what the manifest is fetched by', (t) => {
  const alone = parseImageReference(`ubuntu@${DIGEST}`, HUB);
  t.deepEqual(alone, { location: HUB, repository: 'library/ubuntu', tag: null, digest: DIGEST });
  t.is(referenceForManifest(alone), DIGEST);
  t.is(formatImageReference(alone), `registry-1.docker.io/library/ubuntu@${DIGEST}`);
  const both = parseImageReference(`127.0.0.1:5000/a/b:1@${DIGEST}`, HUB);
  t.deepEqual(both, { location: '127.0.0.1:5000', repository: 'a/b', tag: '1', digest: DIGEST });
  t.is(referenceForManifest(both), DIGEST);
  t.is(formatImageReference(both), `127.0.0.1:5000/a/b:1@${DIGEST}`);
});

function rejects(t: import('ava').ExecutionContext, input: string, fragment: RegExp): void {
  const err = t.throws(() => parseImageReference(input, HUB), { instanceOf: ShifterError });
  t.is(err?.code, 'BAD_ARGUMENT');
  t.regex(err?.message ?? '', fragment);
  t.regex(err?.message ?? '', /a valid reference looks like ubuntu:22\.04/);
  t.true(err?.message.includes(`"${input}"`));
}

test('upper case repositories are refused with the reason', (t) => rejects(t, 'myorg/MyApp:1', /must be lowercase/));
test('bad tags are refused', (t) => rejects(t, 'ubuntu:-bad', /the tag "-bad"/));
test('a too-long tag is refused', (t) => rejects(t, `ubuntu:${'a'.repeat(129)}`, /1 to 128 characters/));
test('bad digests are refused', (t) => rejects(t, 'ubuntu@sha256:1234', /sha256:<64 lowercase hex digits>/));
test('uppercase hex in a digest is refused', (t) => rejects(t, `ubuntu@sha256:${'AB'.repeat(32)}`, /digest/));
test('empty input is refused', (t) => rejects(t, '', /empty/));
test('a doubled slash is refused', (t) => rejects(t, 'a//b', /empty path component/));
test('invalid characters are refused', (t) => rejects(t, 'a/b$c', /"b\$c" may only contain/));
test('white space is refused', (t) => rejects(t, 'ubuntu latest', /white space/));
test('a missing name is refused', (t) => rejects(t, ':tag', /name is missing/));
test('a bad host is refused', (t) => rejects(t, 'bad_host.example:5000/x', /registry host/));
