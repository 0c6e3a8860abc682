import test from 'ava';
import {
  containerArgv,
  containerWorkdir,
  containerEnv,
  parseEnvFile,
  commandSearchPath,
  DEFAULT_PATH,
  type ImageRunConfig,
} from '../../../node-daemon/command/command.js';

const plain: ImageRunConfig = { entrypoint: undefined, cmd: undefined, workdir: undefined, env: [] };
const withCmd: ImageRunConfig = { ...plain, cmd: ['python3', '-V'] };
const withBoth: ImageRunConfig = { entrypoint: ['/entry.sh', '-x'], cmd: ['serve'], workdir: '/app', env: [] };

test('no args, no --entrypoint: ENTRYPOINT+CMD, else CMD, else /bin/sh', (t) => {
  t.deepEqual(containerArgv({ kind: 'none' }, [], withBoth, 'i'), ['/entry.sh', '-x', 'serve']);
  t.deepEqual(containerArgv({ kind: 'none' }, [], withCmd, 'i'), ['python3', '-V']);
  t.deepEqual(containerArgv({ kind: 'none' }, [], plain, 'i'), ['/bin/sh']);
});

test('args without --entrypoint run as given', (t) => {
  t.deepEqual(containerArgv({ kind: 'none' }, ['ls', '-l'], withBoth, 'i'), ['ls', '-l']);
});

test('bare --entrypoint: ENTRYPOINT + (args || CMD); error without ENTRYPOINT', (t) => {
  t.deepEqual(containerArgv({ kind: 'image' }, [], withBoth, 'i'), ['/entry.sh', '-x', 'serve']);
  t.deepEqual(containerArgv({ kind: 'image' }, ['a'], withBoth, 'i'), ['/entry.sh', '-x', 'a']);
  t.throws(() => containerArgv({ kind: 'image' }, [], withCmd, 'me/x:1'), {
    message: /image me\/x:1 has no ENTRYPOINT/,
  });
});

test('--entrypoint=cmd is one element, followed by args only', (t) => {
  t.deepEqual(containerArgv({ kind: 'explicit', cmd: '/bin/echo hi' }, [], withBoth, 'i'), ['/bin/echo hi']);
  t.deepEqual(containerArgv({ kind: 'explicit', cmd: '/bin/echo' }, ['a', 'b'], withBoth, 'i'), [
    '/bin/echo',
    'a',
    'b',
  ]);
});

test('workdir: host cwd default, image WORKDIR when bare, explicit', (t) => {
  t.is(containerWorkdir({ kind: 'host' }, '/home/u/run', withBoth, 'i'), '/home/u/run');
  t.is(containerWorkdir({ kind: 'image' }, '/home/u', withBoth, 'i'), '/app');
  t.is(containerWorkdir({ kind: 'explicit', dir: '/w//x/' }, '/home/u', withBoth, 'i'), '/w/x/');
  t.throws(() => containerWorkdir({ kind: 'image' }, '/h', plain, 'img'), { message: /img has no WORKDIR/ });
});

const noEdits = { siteEnv: [], siteEnvAppend: [], siteEnvPrepend: [], siteEnvUnset: [] };

test('env chain order: caller, SHIFTER_*, image ENV, env-file, --env, modules, site', (t) => {
  const env = containerEnv({
    callerEnv: { HOME: '/home/u', A: 'caller', PATH: '/host/bin' },
    clearEnv: false,
    imageRequest: 'ubuntu:22.04',
    imageId: 'abc',
    image: { ...plain, env: ['PATH=/usr/bin:/bin', 'A=image', 'B=image', 'BROKEN'] },
    envFile: [
      ['B', 'file'],
      ['C', 'file'],
    ],
    cliEnv: [['C', 'cli']],
    modules: [{ ...noEdits, siteEnv: ['MOD=1'], siteEnvPrepend: ['PATH=/opt/mod/bin'] }],
    site: {
      siteEnv: ['SHIFTER_RUNTIME=1', 'EMPTY='],
      siteEnvAppend: ['PATH=/opt/udiImage/bin', 'NEWVAR=x'],
      siteEnvPrepend: [],
      siteEnvUnset: ['HOME'],
    },
  });
  t.is(env.get('A'), 'image');
  t.is(env.get('B'), 'file');
  t.is(env.get('C'), 'cli');
  t.is(env.get('MOD'), '1');
  t.is(env.get('SHIFTER_IMAGE'), 'abc');
  t.is(env.get('SHIFTER_IMAGEREQUEST'), 'ubuntu:22.04');
  t.is(env.get('SHIFTER_RUNTIME'), '1');
  t.is(env.get('PATH'), '/opt/mod/bin:/usr/bin:/bin:/opt/udiImage/bin');
  t.is(env.get('NEWVAR'), 'x', 'append on an unset variable sets it');
  t.false(env.has('HOME'));
  t.false(env.has('EMPTY'));
  t.false(env.has('BROKEN'));
  t.is(commandSearchPath(env), '/opt/mod/bin:/usr/bin:/bin:/opt/udiImage/bin');
});

test('-E starts from an empty environment; default PATH for the search', (t) => {
  const env = containerEnv({
    callerEnv: { HOME: '/home/u' },
    clearEnv: true,
    imageRequest: 'r',
    imageId: 'i',
    image: plain,
    envFile: [],
    cliEnv: [],
    modules: [],
    site: noEdits,
  });
  t.deepEqual([...env.keys()], ['SHIFTER_IMAGEREQUEST', 'SHIFTER_IMAGE']);
  t.is(commandSearchPath(env), DEFAULT_PATH);
});

test('env-file: comments, blanks, literal quotes, clear error with line number', (t) => {
  t.deepEqual(parseEnvFile('# c\n\nA=1\n  B="two words"\nC=x=y\r\n', 'f'), [
    ['A', '1'],
    ['B', '"two words"'],
    ['C', 'x=y'],
  ]);
  t.throws(() => parseEnvFile('A=1\nnope\n', 'vars.env'), { message: /vars\.env line 2: expected NAME=VALUE/ });
});
