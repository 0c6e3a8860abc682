/** Bearer-token and Basic authentication against a real docker-registry and token server. */
import test from 'ava';
import { gzipSync } from 'node:zlib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ShifterError } from '../../../common/errors.js';
import { RegistryClient } from '../../../gateway/registry/client.js';
import { BlobCache } from '../../../gateway/registry/blob-cache.js';
import type { RegistryEndpoint } from '../../../gateway/registry/endpoint.js';
import {
  imageConfig,
  pushImage,
  startRegistry,
  tarLayer,
  type PushedImage,
  type RunningRegistry,
} from '../../helpers/registry.js';
import { startTokenServer, type TokenServer } from '../../helpers/token-server.js';
import { startFlakyProxy, type FlakyProxy } from '../../helpers/flaky-proxy.js';

const log = pino({ level: 'silent' });
const pusher = { username: 'pusher', password: 'push-pw' };
const alice = { username: 'alice', password: 'alice-pw' };

let tokens: TokenServer;
let tokenReg: RunningRegistry;
let basicReg: RunningRegistry;
let proxy: FlakyProxy;
let cacheDir: string;
let publicImg: PushedImage;
let privateImg: PushedImage;
let basicImg: PushedImage;

test.before(async () => {
  tokens = await startTokenServer({
    users: { [pusher.username]: pusher.password, [alice.username]: alice.password },
    repos: [
      { name: 'public/*', anonymous: ['pull'], users: { pusher: ['*'], alice: ['pull'] } },
      { name: 'private/*', users: { pusher: ['*'], alice: ['pull'] } },
    ],
  });
  [tokenReg, basicReg] = await Promise.all([
    startRegistry({ auth: { token: tokens } }),
    startRegistry({ auth: { htpasswd: alice } }),
  ]);
  proxy = await startFlakyProxy(basicReg.url);
  cacheDir = await mkdtemp(join(tmpdir(), 'registry-auth-test-'));
  const layer = gzipSync(await tarLayer([{ name: 'f', content: 'x' }]));
  publicImg = await pushImage(tokenReg.url, 'public/app', '1', {
    layers: [layer],
    config: imageConfig({ Env: ['P=1'] }),
    auth: pusher,
  });
  privateImg = await pushImage(tokenReg.url, 'private/app', '1', {
    layers: [layer],
    config: imageConfig({ Env: ['S=1'] }),
    auth: pusher,
  });
  basicImg = await pushImage(basicReg.url, 'team/app', '1', { layers: [layer], config: imageConfig({}), auth: alice });
});

test.after.always(async () => {
  await proxy?.stop();
  await Promise.all([tokenReg?.stop(), basicReg?.stop()]);
  await tokens?.stop();
  if (cacheDir) await rm(cacheDir, { recursive: true, force: true });
});

const client = (e: Partial<RegistryEndpoint>, env: NodeJS.ProcessEnv = {}) =>
  new RegistryClient({ baseUrl: tokenReg.url, authMethod: 'token', ...e }, log, { attempts: 2, backoffMs: 20, env });

test.serial('an anonymous pull of a public repository uses an anonymous token', async (t) => {
  const before = tokens.requests.length;
  const img = await client({}).resolve('public/app', '1');
  t.is(img.manifestDigest, publicImg.manifestDigest);
  t.deepEqual(img.config.env, ['P=1']);
  t.false(img.usedCredentials);
  const seen = tokens.requests.slice(before);
  t.true(seen.length >= 1);
  t.true(seen.every((r) => r.user === null && r.scopes.includes('repository:public/app:pull')));
});

test.serial('credentials are not used when the anonymous token suffices, and tokens are cached', async (t) => {
  const c = client({ credentials: alice });
  const img = await c.resolve('public/app', '1');
  t.false(img.usedCredentials);
  const before = tokens.requests.length;
  await c.resolve('public/app', '1');
  t.is(tokens.requests.length, before, 'the cached token was reused');
});

test.serial('a private repository: anonymous first, then the credentials; blobs come with the token', async (t) => {
  const before = tokens.requests.length;
  const c = client({ credentials: alice });
  const img = await c.resolve('private/app', '1');
  t.is(img.manifestDigest, privateImg.manifestDigest);
  t.true(img.usedCredentials);
  const seen = tokens.requests.slice(before).map((r) => r.user);
  t.deepEqual(seen, [null, 'alice']);
  const path = await c.fetchBlob('private/app', img.layers[0], new BlobCache(cacheDir));
  t.is(path, join(cacheDir, 'sha256', img.layers[0].digest.slice('sha256:'.length)));
});

test.serial('a private repository without credentials is AUTH_FAILED suggesting shifterimg login', async (t) => {
  const err = await t.throwsAsync(client({}).resolve('private/app', '1'), { instanceOf: ShifterError });
  t.is(err?.code, 'AUTH_FAILED');
  t.true(err?.message.includes(`${tokenReg.host} refused access to private/app`));
  t.regex(err?.message ?? '', /run `shifterimg login`/);
});

test.serial('a wrong password is AUTH_FAILED naming registry and repository', async (t) => {
  const err = await t.throwsAsync(
    client({ credentials: { username: 'alice', password: 'wrong' } }).resolve('private/app', '1'),
    { instanceOf: ShifterError },
  );
  t.is(err?.code, 'AUTH_FAILED');
  t.true(err?.message.includes(`${tokenReg.host} refused access to private/app`));
  t.regex(err?.message ?? '', /check the username and password/);
  t.true(tokens.requests.some((r) => r.user === null && r.status === 401 && r.authorization));
});

test('basic auth: sent directly, marks the pull as credentialed', async (t) => {
  const img = await new RegistryClient({ baseUrl: basicReg.url, authMethod: 'basic', credentials: alice }, log).resolve(
    'team/app',
    '1',
  );
  t.is(img.manifestDigest, basicImg.manifestDigest);
  t.true(img.usedCredentials);
});

test('basic auth: a token-mode client answers a Basic challenge with its credentials', async (t) => {
  const img = await new RegistryClient({ baseUrl: basicReg.url, authMethod: 'token', credentials: alice }, log).resolve(
    'team/app',
    '1',
  );
  t.is(img.manifestDigest, basicImg.manifestDigest);
  t.true(img.usedCredentials);
});

test('basic auth: wrong or missing credentials are AUTH_FAILED', async (t) => {
  const wrong = await t.throwsAsync(
    new RegistryClient(
      { baseUrl: basicReg.url, authMethod: 'basic', credentials: { ...alice, password: 'x' } },
      log,
    ).resolve('team/app', '1'),
    { instanceOf: ShifterError },
  );
  t.is(wrong?.code, 'AUTH_FAILED');
  t.regex(wrong?.message ?? '', /credentials were rejected/);
  const none = await t.throwsAsync(
    new RegistryClient({ baseUrl: basicReg.url, authMethod: 'basic' }, log).resolve('team/app', '1'),
    { instanceOf: ShifterError },
  );
  t.is(none?.code, 'AUTH_FAILED');
  t.regex(none?.message ?? '', /shifterimg login/);
});

test('through http_proxy: requests go to the proxy, and credentials are refused over plain http to a remote host', async (t) => {
  const env = { http_proxy: proxy.url };
  const port = new URL(basicReg.url).port;
  const remote = { baseUrl: `http://registry.test:${port}` };
  const err = await t.throwsAsync(
    new RegistryClient({ ...remote, authMethod: 'basic', credentials: alice }, log, { env }).resolve('team/app', '1'),
    { instanceOf: ShifterError },
  );
  t.is(err?.code, 'BAD_CONFIG');
  t.regex(err?.message ?? '', /refusing to send credentials for registry\.test:\d+ over plain http/);
  t.false(
    proxy.requests.some((r) => r.headers.authorization !== undefined),
    'no credentials left the client',
  );
  const anonymous = await t.throwsAsync(
    new RegistryClient({ ...remote, authMethod: 'token', credentials: alice }, log, { env }).resolve('team/app', '1'),
    { instanceOf: ShifterError },
  );
  t.is(anonymous?.code, 'BAD_CONFIG');
  t.true(
    proxy.requests.some((r) => r.url.startsWith(`http://registry.test:${port}/v2/team/app/manifests/1`)),
    'the absolute-form request reached the proxy',
  );
  t.false(proxy.requests.some((r) => r.headers.authorization !== undefined));
});
