import test from 'ava';
import { routePath } from '../../common/gateway-client/routes.js';
import { parseImageDescriptor } from '../../common/image-descriptor.js';

const lookup = (system: string, image: string) =>
  routePath({ verb: 'lookup', system, image: parseImageDescriptor(image) });

test("system routes: the system name is one encoded segment, with upstream's trailing slash", (t) => {
  t.is(routePath({ verb: 'list', system: 'cori' }), '/api/list/cori/');
  t.is(routePath({ verb: 'queue', system: 'perl mutter' }), '/api/queue/perl%20mutter/');
  t.is(routePath({ verb: 'list', system: 'a/b?c#d%e' }), '/api/list/a%2Fb%3Fc%23d%25e/');
});

test('image routes: tags keep their / and have :, @ and + encoded in each segment', (t) => {
  t.is(lookup('cori', 'ubuntu'), '/api/lookup/cori/docker/ubuntu%3Alatest/');
  t.is(lookup('cori', 'docker:reg:5000/me/app:1.0'), '/api/lookup/cori/docker/reg%3A5000/me/app%3A1.0/');
  t.is(
    lookup('cori', `me/app@sha256:${'a'.repeat(64)}`),
    `/api/lookup/cori/docker/me/app%40sha256%3A${'a'.repeat(64)}/`,
  );
  t.is(lookup('cori', 'custom:my_image+v2'), '/api/lookup/cori/custom/my_image%2Bv2/');
  t.is(
    routePath({ verb: 'pull', system: 'my sys', image: parseImageDescriptor('127.0.0.1:5000/a/b:1') }),
    '/api/pull/my%20sys/docker/127.0.0.1%3A5000/a/b%3A1/',
  );
  t.is(lookup('cori', `id:${'f'.repeat(64)}`), `/api/lookup/cori/id/${'f'.repeat(64)}/`);
});

test('segments an HTTP stack could resolve into another route are refused', (t) => {
  for (const tag of ['../../list/x', 'a/./b', 'a//b', 'a/', '.']) {
    const e = t.throws(() => routePath({ verb: 'lookup', system: 'cori', image: { type: 'docker', tag } }));
    t.is(
      e?.message,
      `image docker:${tag} cannot be sent to the image gateway: ` +
        "an empty, '.' or '..' path component would name another route",
    );
  }
  for (const system of ['', '.', '..']) {
    t.throws(() => routePath({ verb: 'list', system }), {
      message: new RegExp(`^system name '${system.replace(/\./g, '\\.')}' cannot be sent`),
    });
  }
});

test("local: images are not the gateway's: refused with what to use instead", (t) => {
  t.throws(() => routePath({ verb: 'pull', system: 'cori', image: parseImageDescriptor('local:/srv/root') }), {
    message:
      'local:/srv/root is a directory on this system, not an image the gateway holds: name a docker: or custom: image',
  });
});
