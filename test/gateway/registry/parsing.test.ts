/** The registry client's pure parts: manifests, media types, platforms, auth challenges, proxies. */
import test from 'ava';
import { ShifterError } from '../../../common/errors.js';
import { parseImageConfig, parseManifest, sha256Digest } from '../../../gateway/registry/manifest.js';
import { MANIFEST_ACCEPT, layerCompression } from '../../../gateway/registry/media-types.js';
import { platformMatches, selectPlatform } from '../../../gateway/registry/platform.js';
import {
  TokenCache,
  assertSafeForCredentials,
  parseChallenges,
  parseTokenResponse,
  tokenUrl,
} from '../../../gateway/registry/auth.js';
import { proxyAuthorization, proxyFor } from '../../../gateway/registry/proxy.js';
import { headersForRedirect } from '../../../gateway/registry/http.js';
import { defaultBaseUrl } from '../../../gateway/registry/endpoint.js';
import { contentRangeStart } from '../../../gateway/registry/blob-download.js';

const D = (c: string) => `sha256:${c.repeat(64)}`;

test('the Accept list names all four manifest types', (t) => {
  for (const type of [
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.oci.image.manifest.v1+json',
    'application/vnd.docker.distribution.manifest.list.v2+json',
    'application/vnd.docker.distribution.manifest.v2+json',
  ])
    t.true(MANIFEST_ACCEPT.split(', ').includes(type), type);
});

test('layer compression by media type', (t) => {
  t.is(layerCompression('application/vnd.oci.image.layer.v1.tar+gzip'), 'gzip');
  t.is(layerCompression('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
  t.is(layerCompression('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
  t.is(layerCompression('application/vnd.oci.image.layer.v1.tar'), 'none');
  const foreign = t.throws(() => layerCompression('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'), {
    instanceOf: ShifterError,
  });
  t.regex(foreign?.message ?? '', /foreign \(non-distributable\) layer .* use a Linux image/);
  const nd = t.throws(() => layerCompression('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'), {
    instanceOf: ShifterError,
  });
  t.regex(nd?.message ?? '', /non-distributable/);
  const unknown = t.throws(() => layerCompression('application/x-weird'), { instanceOf: ShifterError });
  t.regex(unknown?.message ?? '', /unsupported media type "application\/x-weird"/);
});

test('schema1 manifests are refused with the fix', (t) => {
  const body = Buffer.from(
    JSON.stringify({ schemaVersion: 1, name: 'old/app', tag: 'v1', fsLayers: [], history: [], signatures: [] }),
  );
  for (const ct of ['application/vnd.docker.distribution.manifest.v1+prettyjws', 'application/json', undefined]) {
    const err = t.throws(() => parseManifest(body, ct), { instanceOf: ShifterError });
    t.is(err?.code, 'REGISTRY_ERROR');
    t.regex(
      err?.message ?? '',
      /schema 1 manifest format, which is deprecated and not supported; re-push it with a current client/,
    );
  }
});

test('image manifests: descriptors are checked', (t) => {
  const ok = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('a'), size: 10 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('b'), size: 20 }],
  };
  t.deepEqual(parseManifest(Buffer.from(JSON.stringify(ok)), undefined), {
    kind: 'image',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D('a'), size: 10 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: D('b'), size: 20 }],
  });
  const badDigest = { ...ok, layers: [{ ...ok.layers[0], digest: 'sha256:../../etc/passwd' }] };
  t.throws(() => parseManifest(Buffer.from(JSON.stringify(badDigest)), undefined), {
    message: /is not sha256:<64 hex digits>/,
  });
  const badSize = { ...ok, layers: [{ ...ok.layers[0], size: -1 }] };
  t.throws(() => parseManifest(Buffer.from(JSON.stringify(badSize)), undefined), { message: /has no valid size/ });
  const urls = { ...ok, layers: [{ ...ok.layers[0], urls: ['http://example.org/x'] }] };
  t.throws(() => parseManifest(Buffer.from(JSON.stringify(urls)), undefined), { message: /foreign layer/ });
  t.throws(() => parseManifest(Buffer.from('{not json'), undefined), { message: /invalid manifest: it is not JSON/ });
});

test('image config: fields map and junk is refused', (t) => {
  const cfg = parseImageConfig(
    Buffer.from(
      JSON.stringify({ config: { Env: ['A=1'], Entrypoint: '/bin/x', WorkingDir: '', Labels: { a: 'b', n: 3 } } }),
    ),
  );
  t.deepEqual(cfg, {
    env: ['A=1'],
    entrypoint: ['/bin/x'],
    cmd: null,
    workingDir: null,
    labels: { a: 'b' },
    user: null,
  });
  t.throws(() => parseImageConfig(Buffer.from(JSON.stringify({ config: { Env: [1] } }))), {
    message: /Env is not a list of strings/,
  });
});

test('platform selection: first match wins, arm64 v8 matches arm64 without variant', (t) => {
  const entries = [
    { digest: D('1'), platform: { os: 'linux', architecture: 'arm', variant: 'v7' } },
    { digest: D('2'), platform: { os: 'linux', architecture: 'arm64' } },
    { digest: D('3'), platform: { os: 'linux', architecture: 'amd64' } },
    { digest: D('4'), platform: { os: 'windows', architecture: 'amd64' } },
  ];
  t.is(selectPlatform(entries, { os: 'linux', architecture: 'amd64' })?.digest, D('3'));
  t.is(selectPlatform(entries, { os: 'linux', architecture: 'arm64', variant: 'v8' })?.digest, D('2'));
  t.is(selectPlatform(entries, { os: 'linux', architecture: 'arm', variant: 'v6' }), undefined);
  t.false(platformMatches({ os: 'linux', architecture: 'amd64' }, undefined));
});

test('WWW-Authenticate challenges parse with quoting and several schemes', (t) => {
  const c = parseChallenges(
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull,push"',
  );
  t.deepEqual(c, [
    {
      scheme: 'bearer',
      params: {
        realm: 'https://auth.docker.io/token',
        service: 'registry.docker.io',
        scope: 'repository:library/ubuntu:pull,push',
      },
    },
  ]);
  const two = parseChallenges(['Basic realm="x \\"q\\""', 'Bearer realm=http://t/token, error=insufficient_scope']);
  t.deepEqual(
    two.map((x) => x.scheme),
    ['basic', 'bearer'],
  );
  t.is(two[0].params.realm, 'x "q"');
  t.is(two[1].params.error, 'insufficient_scope');
  const url = tokenUrl(c[0], 'repository:a/b:pull');
  t.is(url.href, 'https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Aa%2Fb%3Apull');
  t.throws(() => tokenUrl({ scheme: 'bearer', params: { realm: 'file:///etc/passwd' } }, 's'), {
    message: /not an http\(s\) URL/,
  });
});

test('token answers and token cache expiry', (t) => {
  t.deepEqual(parseTokenResponse(Buffer.from('{"access_token":"abc","expires_in":300}')), {
    token: 'abc',
    expiresIn: 300,
  });
  t.throws(() => parseTokenResponse(Buffer.from('{}')), { message: /without a token/ });
  const cache = new TokenCache();
  cache.set('k', 'tok', 60, 1000);
  t.is(cache.get('k', 1000 + 49_000), 'tok');
  t.is(cache.get('k', 1000 + 51_000), undefined);
});

test('credentials only travel over https or to loopback', (t) => {
  t.notThrows(() => assertSafeForCredentials(new URL('https://r.example.org/v2/'), 'r'));
  t.notThrows(() => assertSafeForCredentials(new URL('http://127.0.0.1:5000/v2/'), 'r'));
  t.notThrows(() => assertSafeForCredentials(new URL('http://localhost:5000/v2/'), 'r'));
  const err = t.throws(() => assertSafeForCredentials(new URL('http://r.example.org/v2/'), 'r.example.org'), {
    instanceOf: ShifterError,
  });
  t.regex(err?.message ?? '', /refusing to send credentials for r\.example\.org over plain http/);
});

test('proxy selection follows http_proxy/https_proxy/no_proxy', (t) => {
  const env = {
    http_proxy: 'proxy.site:3128',
    HTTPS_PROXY: 'http://u:p%40ss@sproxy.site:8080',
    no_proxy: '.internal.org,registry.local:5000',
  };
  t.is(proxyFor(new URL('http://r.example.org/v2/'), env)?.href, 'http://proxy.site:3128/');
  t.is(proxyFor(new URL('https://r.example.org/v2/'), env)?.host, 'sproxy.site:8080');
  t.is(
    proxyAuthorization(proxyFor(new URL('https://r.example.org/v2/'), env)!),
    `Basic ${Buffer.from('u:p@ss').toString('base64')}`,
  );
  t.is(proxyFor(new URL('https://a.internal.org/v2/'), env), null);
  t.is(proxyFor(new URL('https://internal.org/v2/'), env), null);
  t.is(proxyFor(new URL('http://registry.local:5000/v2/'), env), null);
  t.not(proxyFor(new URL('http://registry.local:5001/v2/'), env), null);
  t.is(proxyFor(new URL('http://127.0.0.1:5000/v2/'), env), null);
  t.is(proxyFor(new URL('https://x.org/'), { https_proxy: 'http://p:1', no_proxy: '*' }), null);
  t.is(proxyFor(new URL('https://x.org/'), { http_proxy: 'http://p:1' }), null);
});

test('redirects to another origin drop Authorization, same origin keeps it', (t) => {
  const h = { authorization: 'Bearer x', range: 'bytes=5-' };
  t.deepEqual(headersForRedirect(new URL('http://127.0.0.1:1/a'), new URL('http://127.0.0.1:1/b'), h), h);
  t.deepEqual(headersForRedirect(new URL('http://127.0.0.1:1/a'), new URL('http://127.0.0.1:2/b'), h), {
    range: 'bytes=5-',
  });
  t.deepEqual(
    headersForRedirect(new URL('https://r.org/a'), new URL('https://s3.amazonaws.com/b'), { Authorization: 'x' }),
    {},
  );
});

test('Content-Range start offsets', (t) => {
  t.is(contentRangeStart('bytes 100-199/200'), 100);
  t.is(contentRangeStart('bytes 0-9/*'), 0);
  t.is(contentRangeStart(undefined), null);
  t.is(sha256Digest(Buffer.from('')), 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
});

test('a registry with no Locations entry is spoken to over https, loopback too; Docker Hub on its API host', (t) => {
  t.is(defaultBaseUrl('127.0.0.1:5000', false), 'https://127.0.0.1:5000');
  t.is(defaultBaseUrl('localhost:5000', false), 'https://localhost:5000');
  t.is(defaultBaseUrl('ghcr.io', false), 'https://ghcr.io');
  t.is(defaultBaseUrl('docker.io', true), 'https://registry-1.docker.io');
});
