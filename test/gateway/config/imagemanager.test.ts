import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  configPathFrom,
  loadGatewayConfig,
  parseExpirationTimeout,
  parseGatewayConfig,
} from '../../../gateway/config/imagemanager.js';

const base = () => ({
  CacheDirectory: '/var/cache/shifter',
  ExpandDirectory: '/var/tmp/shifter',
  Platforms: {
    mycluster: {
      accesstype: 'local',
      local: { imageDir: '/images' },
      mungeSocketPath: '/run/munge/munge.socket.2',
      admins: ['root'],
    },
  },
});

test('upstream example keys are all accepted, with defaults filled in', (t) => {
  const { config, warnings } = parseGatewayConfig(
    {
      ...base(),
      WorkerThreads: 2,
      LogLevel: 'debug',
      DefaultImageLocation: 'registry-1.docker.io',
      DefaultImageFormat: 'squashfs',
      PullUpdateTimeout: 120,
      ImageExpirationTimeout: '90:00:00:00',
      MongoDBURI: 'mongodb://localhost/',
      MongoDB: 'Shifter',
      Metrics: true,
      Authentication: 'munge',
      ImportUsers: ['alice'],
      ConverterOptions: { squashfs: ['-comp', 'zstd'] },
      examiner: '/usr/local/bin/scan',
      DefaultLustreReplication: 1,
      DefaultOstCount: 16,
      DefaultImageRemote: 'x',
      PullUpdateTime: 300,
      Locations: {
        'registry-1.docker.io': { remotetype: 'dockerv2', authentication: 'http' },
        'site.example.org': { url: 'http://127.0.0.1:5000/', authMethod: 'basic', sslcacert: '/etc/ca.pem' },
      },
    },
    '/etc/shifter/imagemanager.json',
  );
  t.deepEqual(warnings, []);
  t.is(config.workerThreads, 2);
  t.is(config.pullUpdateTimeoutSec, 120);
  t.is(config.imageExpirationTimeoutSec, 90 * 86400);
  t.deepEqual(config.mongo, { uri: 'mongodb://localhost/', db: 'Shifter' });
  t.deepEqual(config.converterOptions, { squashfs: ['-comp', 'zstd'] });
  t.deepEqual(config.importUsers, { names: ['alice'], uids: [] });
  t.is(config.locations['registry-1.docker.io'].baseUrl, 'https://registry-1.docker.io');
  t.deepEqual(config.locations['site.example.org'], {
    name: 'site.example.org',
    remotetype: 'dockerv2',
    baseUrl: 'http://127.0.0.1:5000',
    authMethod: 'basic',
    caFile: '/etc/ca.pem',
  });
  t.is(config.platforms.mycluster.imageDir, '/images');
  t.is(config.platforms.mycluster.platform, 'linux/amd64');
});

test('defaults: no Mongo needed (SQLite in CacheDirectory), 300 s pull timeout, munge auth, 1 worker', (t) => {
  const { config } = parseGatewayConfig(base());
  t.is(config.mongo, null);
  t.is(config.metadataStore, '/var/cache/shifter/gateway.sqlite');
  t.is(config.pullUpdateTimeoutSec, 300);
  t.is(config.authentication, 'munge');
  t.is(config.workerThreads, 1);
  t.is(config.defaultImageLocation, 'index.docker.io');
  t.is(config.imageExpirationTimeoutSec, null);
});

const rejects = (t: import('ava').ExecutionContext, raw: unknown, pattern: RegExp) => {
  const e = t.throws(() => parseGatewayConfig(raw), { message: pattern });
  t.is((e as { code?: string }).code, 'BAD_CONFIG');
};

test('errors name the key, the problem and the fix', (t) => {
  const { CacheDirectory: _c, ...noCache } = base();
  rejects(t, noCache, /CacheDirectory is missing; add "CacheDirectory": "\/var\/cache/);
  rejects(t, { ...base(), WorkerThreads: 0 }, /WorkerThreads must be an integer >= 1 \(got 0\)/);
  rejects(t, { ...base(), PullUpdateTimeout: 'soon' }, /PullUpdateTimeout must be an integer/);
  rejects(
    t,
    { ...base(), ImageExpirationTimeout: '90 days' },
    /ImageExpirationTimeout is "90 days"; write "days:hours:minutes:seconds"/,
  );
  rejects(t, { ...base(), DefaultImageFormat: 'cramfs' }, /DefaultImageFormat is "cramfs".*use "squashfs"/);
  rejects(t, { ...base(), Authentication: 'kerberos' }, /Authentication is "kerberos"/);
  rejects(t, { ...base(), ConverterOptions: { squashfs: 5 } }, /ConverterOptions\.squashfs must be a string or a list/);
  rejects(
    t,
    { ...base(), Locations: { r: { url: 'ftp://r' } } },
    /Locations\.r\.url has scheme "ftp:"; use http:\/\/ or https:\/\//,
  );
  rejects(
    t,
    { ...base(), Locations: { r: { authMethod: 'oauth' } } },
    /Locations\.r\.authMethod is "oauth"; use "token"/,
  );
  rejects(t, { ...base(), Locations: { r: { remotetype: 'dockerhub' } } }, /Locations\.r\.remotetype is "dockerhub"/);
  rejects(t, { ...base(), MongoDBURI: 'localhost:27017' }, /MongoDBURI is "localhost:27017"; write mongodb:\/\//);
  rejects(t, { ...base(), Platforms: {} }, /Platforms is missing or empty; add at least one system/);
  rejects(
    t,
    { ...base(), Platforms: { c: { accesstype: 'remote', host: ['h'], ssh: {} } } },
    /Platforms\.c\.ssh\.imageDir is missing/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { accesstype: 'remote', ssh: { imageDir: '/i' } } } },
    /Platforms\.c\.host is missing/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { accesstype: 'remote', host: 'h', ssh: { imageDir: '/i; rm -rf /' } } } },
    /Platforms\.c\.ssh\.imageDir is "\/i; rm -rf \/"; write an absolute path of letters/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { accesstype: 'remote', host: ['-oProxyCommand=x'], ssh: { imageDir: '/i' } } } },
    /Platforms\.c\.host has "-oProxyCommand=x", which is not a host name/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { accesstype: 'ftp' } } },
    /Platforms\.c\.accesstype is "ftp"; use "local" or "remote"/,
  );
  rejects(t, { ...base(), Platforms: { c: { accesstype: 'local' } } }, /Platforms\.c\.local is missing/);
  rejects(
    t,
    { ...base(), Platforms: { c: { local: { imageDir: 'images' } } } },
    /Platforms\.c\.local\.imageDir must be an absolute path/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { local: { imageDir: '/i' }, admins: 'root' } } },
    /Platforms\.c\.admins must be a list of user names/,
  );
  rejects(
    t,
    { ...base(), Platforms: { c: { local: { imageDir: '/i' }, platform: 'amd64' } } },
    /Platforms\.c\.platform is "amd64"; write os\/arch/,
  );
});

test('a remote platform: host[0], the ssh user, key, imageDir and extra options, as upstream names them', (t) => {
  const { config } = parseGatewayConfig({
    ...base(),
    Platforms: {
      c: {
        accesstype: 'remote',
        host: ['img1.example.org', 'img2.example.org'],
        ssh: {
          username: 'shifter',
          key: '/etc/shifter/id_ed25519',
          imageDir: '/scratch/images',
          sshCmdOptions: '-p 2222 -o ConnectTimeout=5',
          scpCmdOptions: ['-P', '2222'],
        },
      },
    },
  });
  t.like(config.platforms.c, {
    accesstype: 'remote',
    imageDir: '/scratch/images',
    remote: {
      host: 'img1.example.org',
      user: 'shifter',
      key: '/etc/shifter/id_ed25519',
      sshOptions: ['-p', '2222', '-o', 'ConnectTimeout=5'],
      scpOptions: ['-P', '2222'],
    },
  });
});

test('unknown keys and ignored upstream features produce warnings, not errors', (t) => {
  const { warnings } = parseGatewayConfig({
    ...base(),
    Colour: 'blue',
    ConvertOptions: {},
    Platforms: { c: { local: { imageDir: '/i' }, use_external: true, policy_file: '/p.json', ssh_thing: 1 } },
  });
  t.true(warnings.some((w) => /unknown key Colour/.test(w)));
  t.true(warnings.some((w) => /unknown key ConvertOptions/.test(w)));
  t.true(warnings.some((w) => /Platforms\.c\.use_external is ignored/.test(w)));
  t.true(warnings.some((w) => /Platforms\.c\.policy_file is ignored/.test(w)));
  t.true(warnings.some((w) => /unknown key Platforms\.c\.ssh_thing/.test(w)));
});

test('ImportUsers takes "all", "none"/"None", and user names mixed with uids (upstream #311)', (t) => {
  const parse = (ImportUsers: unknown) => parseGatewayConfig({ ...base(), ImportUsers }).config.importUsers;
  t.is(parse(undefined), 'none');
  t.is(parse('None'), 'none');
  t.is(parse('all'), 'all');
  t.deepEqual(parse(['alice', 1001, '1002']), { names: ['alice'], uids: [1001, 1002] });
  t.throws(() => parse([-1]), {
    message: /ImportUsers has the entry -1; use "all", "none" or a list of user names and uids/,
  });
  t.throws(() => parse('some'), { message: /ImportUsers is "some"/ });
});

test('D:H:M:S expiration parsing', (t) => {
  t.is(parseExpirationTimeout('1:02:03:04'), 86400 + 2 * 3600 + 3 * 60 + 4);
  t.is(parseExpirationTimeout('30'), 30);
  t.is(parseExpirationTimeout('1:x'), null);
});

test('the config path comes from --config, then GWCONFIG, then /etc/shifter', (t) => {
  t.is(configPathFrom('/a.json', { GWCONFIG: '/b.json' }), '/a.json');
  t.is(configPathFrom(undefined, { GWCONFIG: '/b.json' }), '/b.json');
  t.is(configPathFrom(undefined, {}), '/etc/shifter/imagemanager.json');
});

test('files: unreadable, bad JSON and relative paths', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gwcfg-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  t.throws(() => loadGatewayConfig(join(dir, 'none.json')), {
    message: /cannot read .*none\.json \(ENOENT\); pass --config FILE or set GWCONFIG/,
  });
  await writeFile(join(dir, 'bad.json'), '{"WorkerThreads": 1,}');
  t.throws(() => loadGatewayConfig(join(dir, 'bad.json')), {
    message: /bad\.json is not valid JSON: .*; fix the syntax/,
  });
  await writeFile(
    join(dir, 'ok.json'),
    JSON.stringify({ ...base(), CacheDirectory: 'cache', Locations: { r: { sslcacert: 'ca.pem' } } }),
  );
  const { config } = loadGatewayConfig(join(dir, 'ok.json'));
  t.is(config.cacheDirectory, join(dir, 'cache'));
  t.is(config.locations.r.caFile, join(dir, 'ca.pem'));
  await writeFile(join(dir, 'missing.json'), JSON.stringify({ ...base(), WorkerThreads: -1 }));
  t.throws(() => loadGatewayConfig(join(dir, 'missing.json')), {
    message: /^\/.*missing\.json: WorkerThreads must be/,
  });
});
