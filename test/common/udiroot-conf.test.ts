import test from 'ava';
import { rootTest } from '../helpers/privileges.js';
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  KNOWN_KEYS,
  documentedNewKeys,
  parseUdiRootConf,
  requireUdiRootKeys,
} from '../../common/config/udiroot-conf.js';
import {
  DEFAULT_UDIROOT_CONF,
  checkConfigFileTrust,
  readTrustedUdiRootConf,
  readUdiRootConf,
  resolveUdiRootConfPath,
} from '../../common/config/udiroot-file.js';
import { ShifterError } from '../../common/errors.js';
import { DEFAULT_MUNGE_SOCKET } from '../../common/munge.js';
import { UPSTREAM_EXAMPLE } from './upstream-udiroot-example.js';

test('upstream example file parses into typed values with no warnings', (t) => {
  const { config, warnings } = parseUdiRootConf(UPSTREAM_EXAMPLE, '/etc/shifter/udiRoot.conf');
  t.deepEqual(warnings, []);
  t.is(config.sourceFile, '/etc/shifter/udiRoot.conf');
  t.is(config.udiMount, '/var/udiMount');
  t.is(config.loopMount, '/var/udiLoopMount');
  t.is(config.imagePath, '/images');
  t.is(config.udiRootPath, '/opt/shifter/udiRoot/1.0');
  t.is(config.sitePreMountHook, '/etc/shifter/premount.sh');
  t.is(config.optUdiImage, '/usr/libexec/shifter/opt/udiImage');
  t.is(config.etcPath, '/etc/shifter/shifter_etc_files');
  t.true(config.mountUdiRootWritable);
  t.false(config.allowLocalChroot);
  t.is(config.maxGroupCount, 31);
  t.is(config.cpPath, '/bin/cp');
  t.is(config.mkfsXfsPath, '/sbin/mkfs.xfs');
  t.is(config.rootfsType, 'tmpfs');
  t.is(config.gatewayTimeout, undefined);
  t.deepEqual(config.siteFs, ['/home:/home']);
  t.deepEqual(config.siteEnv, ['SHIFTER_RUNTIME=1']);
  t.deepEqual(config.siteEnvAppend, ['PATH=/opt/udiImage/bin']);
  t.deepEqual(config.siteEnvPrepend, []);
  t.deepEqual(config.imageGateway, ['http://imagegwapi:5000']);
  t.is(config.system, 'mycluster');
  t.is(config.defaultImageType, 'docker');
  t.is(config.mountPropagationStyle, 'private');
  t.deepEqual(config.defaultModules, ['mpich']);
  const mpich = config.modules.get('mpich');
  t.truthy(mpich);
  t.deepEqual(mpich?.siteEnvPrepend, ['LD_LIBRARY_PATH=/opt/udiImage/modules/mpich/lib64']);
  t.is(mpich?.copyPath, '/usr/lib/shifter/modules/mpich');
  t.true(mpich?.enabled);
  t.is(config.mungeSocketPath, DEFAULT_MUNGE_SOCKET);
  t.is(config.shifterdSocket, undefined);
});

test('every key of the upstream key table is understood (no unknown-key warning)', (t) => {
  const upstreamKeys = [
    'udiMount',
    'loopMount',
    'imagePath',
    'udiRootPath',
    'sitePreMountHook',
    'sitePostMountHook',
    'optUdiImage',
    'etcPath',
    'allowLocalChroot',
    'allowLibcPwdCalls',
    'populateEtcDynamically',
    'usersToImport',
    'mountUdiRootWritable',
    'maxGroupCount',
    'modprobePath',
    'insmodPath',
    'cpPath',
    'mvPath',
    'chmodPath',
    'ddPath',
    'mkfsXfsPath',
    'rootfsType',
    'gatewayTimeout',
    'siteFs',
    'siteEnv',
    'siteEnvAppend',
    'siteEnvPrepend',
    'siteEnvUnset',
    'imageGateway',
    'batchType',
    'system',
    'defaultImageType',
    'perNodeCachePath',
    'perNodeCacheSizeLimit',
    'perNodeCacheAllowedFsType',
    'mountPropagationStyle',
    'defaultModules',
  ];
  for (const k of upstreamKeys) t.true(KNOWN_KEYS.includes(k), k);
  for (const k of documentedNewKeys) t.true(KNOWN_KEYS.includes(k), k);
});

test('all value kinds: booleans, numbers, lists, propagation, modules, new keys', (t) => {
  const text = [
    'allowLocalChroot=1',
    'allowLibcPwdCalls=0',
    'populateEtcDynamically=yes',
    'usersToImport=sshd  nobody',
    'gatewayTimeout=30',
    'siteEnvUnset=FOO BAR',
    'siteEnv=A=1 B=2',
    'siteEnv=C=3',
    'imageGateway=http://gw1:5000 http://gw2:5000',
    'perNodeCachePath=/tmp/pnc',
    'perNodeCacheSizeLimit=10G',
    'perNodeCacheAllowedFsType=xfs ext4',
    'mountPropagationStyle=slave',
    'batchType=slurm',
    'defaultImageType=custom',
    'siteFs=/global:/global;/scratch:/scratch:rec',
    'siteFs=/var/spool:/var/spool',
    'defaultModules=gpu, mpich',
    'module_gpu_siteEnv=CUDA=1',
    'module_gpu_siteEnvUnset=X',
    'module_gpu_siteEnvPrepend=LD_LIBRARY_PATH=/opt/udiImage/modules/gpu/lib64',
    'module_gpu_siteEnvAppend=PATH=/opt/udiImage/modules/gpu/bin',
    'module_gpu_devices=/dev/nvidiactl; /dev/nvidia-uvm;/dev/nvidia*',
    'module_gpu_conflict=mpich',
    'module_gpu_siteFs=/opt/nvidia:/opt/nvidia',
    'module_gpu_userhook=/usr/lib/hooks/gpu.sh',
    'module_gpu_roothook=/usr/lib/hooks/gpu-root.sh',
    'module_gpu_enabled=0',
    'module_mpich_copyPath=/usr/lib/mpich',
    'mungeSocketPath=/run/munge/other.socket',
    'shifterdSocket=/run/shifterd.sock',
    'moduleHookTimeout=5',
  ].join('\n');
  const { config, warnings } = parseUdiRootConf(text, 'u.conf');
  t.deepEqual(warnings, []);
  t.true(config.allowLocalChroot);
  t.false(config.allowLibcPwdCalls);
  t.true(config.populateEtcDynamically);
  t.deepEqual(config.usersToImport, ['sshd', 'nobody']);
  t.is(config.gatewayTimeout, 30);
  t.deepEqual(config.siteEnvUnset, ['FOO', 'BAR']);
  t.deepEqual(config.siteEnv, ['A=1', 'B=2', 'C=3'], 'repeated list keys accumulate');
  t.deepEqual(config.imageGateway, ['http://gw1:5000', 'http://gw2:5000']);
  t.is(config.perNodeCacheSizeLimit, '10G');
  t.deepEqual(config.perNodeCacheAllowedFsType, ['xfs', 'ext4']);
  t.is(config.mountPropagationStyle, 'slave');
  t.is(config.batchType, 'slurm');
  t.is(config.defaultImageType, 'custom');
  t.deepEqual(config.siteFs, ['/global:/global;/scratch:/scratch:rec', '/var/spool:/var/spool']);
  t.deepEqual(config.defaultModules, ['gpu', 'mpich']);
  const gpu = config.modules.get('gpu');
  t.deepEqual(gpu, {
    name: 'gpu',
    siteEnv: ['CUDA=1'],
    siteEnvPrepend: ['LD_LIBRARY_PATH=/opt/udiImage/modules/gpu/lib64'],
    siteEnvAppend: ['PATH=/opt/udiImage/modules/gpu/bin'],
    siteEnvUnset: ['X'],
    conflict: ['mpich'],
    siteFs: ['/opt/nvidia:/opt/nvidia'],
    userhook: '/usr/lib/hooks/gpu.sh',
    roothook: '/usr/lib/hooks/gpu-root.sh',
    enabled: false,
    devices: ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia*'],
  });
  t.is(config.moduleHookTimeout, 5);
  t.is(config.modules.get('mpich')?.copyPath, '/usr/lib/mpich');
  t.is(config.mungeSocketPath, '/run/munge/other.socket');
  t.is(config.shifterdSocket, '/run/shifterd.sock');
});

test('continuation lines join with a space; comments and blank lines are skipped', (t) => {
  const text =
    'siteEnv=A=1 \\\n   B=2\\\n C=3\n  # indented comment=ignored\n\nsystem = edison \nimageGateway=\\\nhttp://a:1\n';
  const { config, warnings } = parseUdiRootConf(text, 'u.conf');
  t.deepEqual(warnings, []);
  t.deepEqual(config.siteEnv, ['A=1', 'B=2', 'C=3']);
  t.is(config.system, 'edison');
  t.deepEqual(config.imageGateway, ['http://a:1']);
});

test('a value may contain "=" (only the first one splits)', (t) => {
  const { config } = parseUdiRootConf('siteEnvPrepend=PATH=/opt/bin\n', 'u.conf');
  t.deepEqual(config.siteEnvPrepend, ['PATH=/opt/bin']);
});

test('unknown, deprecated and historical keys warn with file and line, and parsing goes on', (t) => {
  const text = [
    'system=a',
    'useOverlayFsMode=0',
    'autoLoadKernelModule=1',
    'kmodBasePath=/lib/modules',
    'kmodCacheFile=/x',
    'optionalSshdAsRoot=1',
    'nodeContextPrefix=foo',
    'siteResources=/opt/gpu',
    'udiImagePath=/x',
    'Imagepath=/images',
    'no equals sign here',
    'system=b',
    'module_a_b_c=1',
    'module_gpu_copypath=/x',
    'defaultModules=missing',
  ].join('\n');
  const { config, warnings } = parseUdiRootConf(text, '/etc/u.conf');
  t.is(config.system, 'b', 'the last value of a scalar wins');
  const msgs = warnings.map((w) => w.message);
  t.true(
    msgs.includes(
      "/etc/u.conf:2: unknown key 'useOverlayFsMode' was ignored (check the spelling; keys are case-sensitive)",
    ),
  );
  t.true(msgs.includes('/etc/u.conf:3: autoLoadKernelModule is deprecated and ignored; remove it'));
  for (const k of ['kmodBasePath', 'kmodCacheFile', 'optionalSshdAsRoot', 'nodeContextPrefix']) {
    t.true(
      warnings.some((w) => w.key === k && /deprecated and ignored/.test(w.message)),
      k,
    );
  }
  t.true(msgs.some((m) => m.startsWith('/etc/u.conf:8: siteResources is no longer supported')));
  t.true(
    msgs.some((m) => m.startsWith('/etc/u.conf:9: udiImagePath is no longer supported') && m.includes('optUdiImage')),
  );
  t.true(msgs.some((m) => m.startsWith("/etc/u.conf:10: unknown key 'Imagepath'")));
  t.true(msgs.some((m) => m.startsWith("/etc/u.conf:11: line has no '='")));
  t.true(msgs.includes('/etc/u.conf:12: system is set again (first on line 1); the value on line 12 wins'));
  t.true(msgs.some((m) => m.startsWith('/etc/u.conf:13:') && m.includes("names cannot contain '_'")));
  t.true(msgs.some((m) => m.startsWith('/etc/u.conf:14:') && m.includes('did you mean module_gpu_copyPath?')));
  t.true(msgs.some((m) => m.startsWith('/etc/u.conf:15:') && m.includes('no module_missing_* keys')));
  t.is(warnings.length, 14);
});

test('values that cannot mean anything are errors naming file, line and the expected form', (t) => {
  const cases: [string, RegExp][] = [
    ['gatewayTimeout=soon', /^u\.conf:2: gatewayTimeout=soon is not valid: expected a number of seconds/],
    ['maxGroupCount=-3', /^u\.conf:2: maxGroupCount=-3 is not valid: expected a whole number/],
    ['allowLocalChroot=maybe', /^u\.conf:2: allowLocalChroot=maybe is not valid: expected 0 or 1/],
    [
      'mountPropagationStyle=shared',
      /^u\.conf:2: mountPropagationStyle=shared is not valid: expected private or slave/,
    ],
    [
      'defaultImageType=oci',
      /^u\.conf:2: defaultImageType=oci is not valid: expected one of docker, custom, id, local/,
    ],
    ['module_gpu_enabled=sure', /^u\.conf:2: module_gpu_enabled=sure is not valid: expected 0 or 1/],
    ['moduleHookTimeout=0', /^u\.conf:2: moduleHookTimeout=0 is not valid: expected a whole number of seconds/],
    ['moduleHookTimeout=2.5', /^u\.conf:2: moduleHookTimeout=2\.5 is not valid: expected a whole number/],
  ];
  for (const [line, re] of cases) {
    const e = t.throws(() => parseUdiRootConf(`system=x\n${line}\n`, 'u.conf'), { instanceOf: ShifterError });
    t.is(e?.code, 'BAD_CONFIG');
    t.regex(e?.message ?? '', re, line);
  }
});

test('requireUdiRootKeys names each missing key, the file and an example value', (t) => {
  const { config } = parseUdiRootConf('udiMount=/var/udiMount\nimageGateway=\n', '/etc/shifter/udiRoot.conf');
  t.notThrows(() => requireUdiRootKeys(config, ['udiMount']));
  const e = t.throws(() => requireUdiRootKeys(config, ['system', 'imageGateway']), { instanceOf: ShifterError });
  t.is(e?.code, 'BAD_CONFIG');
  t.is(
    e?.message,
    '/etc/shifter/udiRoot.conf: keys system, imageGateway are missing: add e.g. system=mycluster, imageGateway=http://imagegw:5000',
  );
  const one = t.throws(() => requireUdiRootKeys(config, ['imagePath']));
  t.is(one?.message, '/etc/shifter/udiRoot.conf: key imagePath is missing: add e.g. imagePath=/images');
});

test('config path: --config, then $SHIFTER_UDIROOT_CONF, then /etc/shifter/udiRoot.conf', (t) => {
  t.is(resolveUdiRootConfPath('/a.conf', { SHIFTER_UDIROOT_CONF: '/b.conf' }), '/a.conf');
  t.is(resolveUdiRootConfPath(undefined, { SHIFTER_UDIROOT_CONF: '/b.conf' }), '/b.conf');
  t.is(resolveUdiRootConfPath(undefined, {}), DEFAULT_UDIROOT_CONF);
  t.is(DEFAULT_UDIROOT_CONF, '/etc/shifter/udiRoot.conf');
});

test('reading: a missing file is one BAD_CONFIG error telling how to point at another', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'udiroot-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const e = await t.throwsAsync(readUdiRootConf(join(dir, 'nope.conf')), { instanceOf: ShifterError });
  t.is(e?.code, 'BAD_CONFIG');
  t.is(
    e?.message,
    `cannot read udiRoot.conf at ${join(dir, 'nope.conf')} (no such file): pass --config <file> or set SHIFTER_UDIROOT_CONF`,
  );
  const file = join(dir, 'udiRoot.conf');
  await writeFile(file, UPSTREAM_EXAMPLE);
  const { config } = await readUdiRootConf(file);
  t.is(config.system, 'mycluster');
  t.is(config.sourceFile, file);
});

rootTest(
  'trust check: root-owned and not group/world-writable passes; anything else is refused with the fix',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'udiroot-'));
    t.teardown(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'udiRoot.conf');
    await writeFile(file, 'system=x\n', { mode: 0o644 });
    await chown(file, 0, 0);
    t.is(await checkConfigFileTrust(file), undefined);
    t.is((await readTrustedUdiRootConf(file)).config.system, 'x');

    await chmod(file, 0o664);
    const writable = await checkConfigFileTrust(file);
    t.is(writable?.code, 'BAD_CONFIG');
    t.is(writable?.message, `${file} must not be writable by group or others (mode 664): chmod go-w ${file}`);

    await chmod(file, 0o644);
    await chown(file, 4321, 0);
    const owned = await checkConfigFileTrust(file);
    t.is(owned?.message, `${file} must be owned by root (it is owned by uid 4321): chown root ${file}`);
    await t.throwsAsync(readTrustedUdiRootConf(file), { message: owned?.message ?? '' });

    const missing = await checkConfigFileTrust(join(dir, 'absent.conf'));
    t.is(missing?.code, 'BAD_CONFIG');
  },
);
test('the lazy keys (lazyImageCache, -Size, lazyChunkTimeout, lazyPrologStageTimeout, lazyFactsTtl) make its config', (t) => {
  const { config, warnings } = parseUdiRootConf(
    'lazyImageCache=/var/cache/shifter\nlazyImageCacheSize=50g\nlazyChunkTimeout=12.5\nlazyPrologStageTimeout=0\n' +
      'lazyFactsTtl=0\n',
    'u.conf',
  );
  t.deepEqual(warnings, []);
  t.deepEqual(config.lazyImageCache, {
    dir: '/var/cache/shifter',
    sizeBytes: 50 * 1024 ** 3,
    chunkTimeoutSeconds: 12.5,
    prologStageTimeoutSeconds: 0,
    factsTtlSeconds: 0,
  });
  const plain = parseUdiRootConf('lazyImageCache=/c\nlazyImageCacheSize=1048576\n', 'u.conf').config;
  t.deepEqual(plain.lazyImageCache, {
    dir: '/c',
    sizeBytes: 1048576,
    chunkTimeoutSeconds: 30,
    prologStageTimeoutSeconds: 60,
    factsTtlSeconds: 60,
  });
  t.is(parseUdiRootConf('imagePath=/i\n', 'u.conf').config.lazyImageCache, undefined);
});

test('a lazy cache setting that cannot work is an error saying what to write', (t) => {
  const message = (text: string): string => t.throws(() => parseUdiRootConf(text, 'u.conf')).message;
  t.regex(message('lazyImageCache=/c\n'), /u\.conf: lazyImageCache and lazyImageCacheSize go together; set both/);
  t.regex(
    message('lazyImageCache=/c\nlazyImageCacheSize=lots\n'),
    /lazyImageCacheSize=lots is not valid: .*e\.g\. 50g/,
  );
  t.regex(
    message('lazyImageCache=c\nlazyImageCacheSize=1g\n'),
    /lazyImageCache=c is not valid: expected an absolute path/,
  );
  t.regex(message('lazyChunkTimeout=0\n'), /u\.conf:1: lazyChunkTimeout=0 is not valid/);
  t.regex(message('lazyFactsTtl=soon\n'), /u\.conf:1: lazyFactsTtl=soon is not valid: expected a number of seconds/);
});

test('lazyChunkCaches: base URLs separated by commas or spaces; anything else is an error saying what to write', (t) => {
  const { config, warnings } = parseUdiRootConf(
    'lazyChunkCaches=http://rack-cache:8080,http://site-cache:8080\nlazyChunkCaches=https://far.example.org/\n',
    'u.conf',
  );
  t.deepEqual(warnings, []);
  t.deepEqual(config.lazyChunkCaches, ['http://rack-cache:8080', 'http://site-cache:8080', 'https://far.example.org/']);
  t.deepEqual(parseUdiRootConf('imagePath=/i\n', 'u.conf').config.lazyChunkCaches, []);
  t.regex(
    t.throws(() => parseUdiRootConf('lazyChunkCaches=rack-cache:8080\n', 'u.conf')).message,
    /^u\.conf:1: lazyChunkCaches=rack-cache:8080 is not valid: expected base URLs of HTTP caches, e\.g\. http:\/\/rack/,
  );
});

test('siteContact is read as written; unset it is undefined', (t) => {
  const set = parseUdiRootConf('siteContact = hpc-help@example.org (or call 555-0100)\n', 'u.conf');
  t.is(set.config.siteContact, 'hpc-help@example.org (or call 555-0100)');
  t.deepEqual(set.warnings, []);
  t.is(parseUdiRootConf('imagePath=/images\n', 'u.conf').config.siteContact, undefined);
});
