/** Resolving Docker v2 and OCI images, manifest lists and indexes, against a real docker-registry. */
import test from 'ava';
import { gzipSync } from 'node:zlib';
import { pino } from 'pino';
import { ShifterError } from '../../../common/errors.js';
import { RegistryClient } from '../../../gateway/registry/client.js';
import { layerCompression } from '../../../gateway/registry/media-types.js';
import {
  MEDIA,
  imageConfig,
  pushImage,
  pushIndex,
  startRegistry,
  tarLayer,
  zstdCompress,
  type RunningRegistry,
} from '../../helpers/registry.js';

const log = pino({ level: 'silent' });
let reg: RunningRegistry;

test.before(async () => {
  reg = await startRegistry();
});
test.after.always(async () => {
  await reg?.stop();
});

const client = (platform?: { os: string; architecture: string; variant?: string }) =>
  new RegistryClient({ baseUrl: reg.url, authMethod: 'token', ...(platform ? { platform } : {}) }, log, {
    attempts: 2,
    backoffMs: 50,
  });

test('a Docker v2 image resolves to its manifest digest, config and gzip layers', async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'etc/hello', content: 'hello\n' }]));
  const pushed = await pushImage(reg.url, 'team/docker-img', '1.0', {
    layers: [layer],
    manifestMediaType: 'docker',
    config: imageConfig({
      Env: ['PATH=/usr/bin', 'A=1'],
      Entrypoint: ['/bin/sh', '-c'],
      Cmd: ['echo hi'],
      WorkingDir: '/work',
      Labels: { 'org.example.x': 'y' },
      User: 'nobody',
    }),
  });
  const img = await client().resolve('team/docker-img', '1.0');
  t.is(img.manifestDigest, pushed.manifestDigest);
  t.deepEqual(img.config, {
    env: ['PATH=/usr/bin', 'A=1'],
    entrypoint: ['/bin/sh', '-c'],
    cmd: ['echo hi'],
    workingDir: '/work',
    labels: { 'org.example.x': 'y' },
    user: 'nobody',
  });
  t.deepEqual(img.layers, [{ digest: pushed.layerDigests[0], size: layer.length, mediaType: MEDIA.dockerLayerGzip }]);
  t.is(layerCompression(img.layers[0].mediaType), 'gzip');
  t.false(img.usedCredentials);
});

test('an OCI image with gzip, zstd and uncompressed layers keeps each media type', async (t) => {
  const tarA = await tarLayer([{ name: 'a', content: 'a' }]);
  const tarB = await tarLayer([{ name: 'b', content: 'b' }]);
  const tarC = await tarLayer([{ name: 'c', content: 'c' }]);
  const gz = await pushImage(reg.url, 'oci/mixed', 'gz', { layers: [gzipSync(tarA)], config: imageConfig({}) });
  const zs = await pushImage(reg.url, 'oci/mixed', 'zst', {
    layers: [zstdCompress(tarB)],
    layerMediaType: MEDIA.ociLayerZstd,
    config: imageConfig({}),
  });
  const raw = await pushImage(reg.url, 'oci/mixed', 'raw', {
    layers: [tarC],
    layerMediaType: MEDIA.ociLayer,
    config: imageConfig({}),
  });
  const c = client();
  const kinds = [];
  for (const [tag, pushed] of [
    ['gz', gz],
    ['zst', zs],
    ['raw', raw],
  ] as const) {
    const img = await c.resolve('oci/mixed', tag);
    t.is(img.manifestDigest, pushed.manifestDigest);
    kinds.push(layerCompression(img.layers[0].mediaType));
  }
  t.deepEqual(kinds, ['gzip', 'zstd', 'none']);
  const byDigest = await c.resolve('oci/mixed', zs.manifestDigest);
  t.is(byDigest.manifestDigest, zs.manifestDigest);
  t.deepEqual(byDigest.config, { env: [], entrypoint: null, cmd: null, workingDir: null, labels: {}, user: null });
});

for (const flavour of ['docker', 'oci'] as const) {
  test(`a ${flavour} multi-platform index picks linux/amd64 by default and linux/arm64 when configured`, async (t) => {
    const repo = `multi/${flavour}`;
    const amd = await pushImage(reg.url, repo, 'amd64', {
      layers: [gzipSync(await tarLayer([{ name: 'arch', content: 'amd64' }]))],
      manifestMediaType: flavour,
      config: imageConfig({ Env: ['ARCH=amd64'] }),
    });
    const arm = await pushImage(reg.url, repo, 'arm64', {
      layers: [gzipSync(await tarLayer([{ name: 'arch', content: 'arm64' }]))],
      manifestMediaType: flavour,
      config: imageConfig({ Env: ['ARCH=arm64'] }, 'arm64'),
    });
    await pushIndex(
      reg.url,
      repo,
      'latest',
      [
        { ...arm, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { ...amd, platform: { os: 'linux', architecture: 'amd64' } },
      ],
      flavour,
    );
    const a = await client().resolve(repo, 'latest');
    t.is(a.manifestDigest, amd.manifestDigest);
    t.deepEqual(a.config.env, ['ARCH=amd64']);
    const b = await client({ os: 'linux', architecture: 'arm64' }).resolve(repo, 'latest');
    t.is(b.manifestDigest, arm.manifestDigest);
    t.deepEqual(b.config.env, ['ARCH=arm64']);
    const err = await t.throwsAsync(client({ os: 'linux', architecture: 's390x' }).resolve(repo, 'latest'), {
      instanceOf: ShifterError,
    });
    t.is(err?.code, 'NOT_FOUND');
    t.regex(err?.message ?? '', /no linux\/s390x variant \(it offers: linux\/arm64\/v8, linux\/amd64\)/);
  });
}

test('a missing image is NOT_FOUND naming it', async (t) => {
  const err = await t.throwsAsync(client().resolve('team/nope', '1.0'), { instanceOf: ShifterError });
  t.is(err?.code, 'NOT_FOUND');
  t.regex(err?.message ?? '', new RegExp(`image ${reg.host}/team/nope:1\\.0 not found`));
});

test('an unknown layer media type is refused naming it', async (t) => {
  await pushImage(reg.url, 'odd/unknown', 'v', {
    layers: [Buffer.from('not a tar')],
    layerMediaType: 'application/x-weird',
    config: imageConfig({}),
  });
  const err = await t.throwsAsync(client().resolve('odd/unknown', 'v'), { instanceOf: ShifterError });
  t.regex(err?.message ?? '', /unsupported media type "application\/x-weird"/);
});
