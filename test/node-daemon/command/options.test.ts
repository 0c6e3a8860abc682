import test from 'ava';
import { parseShifterCommandLine, type ShifterOptions } from '../../../node-daemon/command/options.js';

function run(argv: string[], env: Record<string, string> = {}): ShifterOptions {
  const r = parseShifterCommandLine(argv, env);
  if (r.kind !== 'run') throw new Error('expected run');
  return r.options;
}

test('image, volumes, command; parsing stops at the first non-option', (t) => {
  const o = run(['--image=me/solver:2.1', '--volume=/scratch/run1:/data', 'python3', '-V', 'sim.py', '--image=x']);
  t.is(o.image, 'me/solver:2.1');
  t.is(o.imageRequest, 'me/solver:2.1');
  t.deepEqual(o.volumes, ['/scratch/run1:/data']);
  t.deepEqual(o.command, ['python3', '-V', 'sim.py', '--image=x']);
});

test('short options, attached and separate values, -- ends options', (t) => {
  const o = run(['-i', 'ubuntu', '-V/a:/b', '-V', '/c:/d;/e:/f', '-Ev', '-n', '-e', 'A=1', '-eB=2', '--', '-x']);
  t.is(o.image, 'ubuntu');
  t.deepEqual(o.volumes, ['/a:/b', '/c:/d;/e:/f']);
  t.true(o.clearEnv);
  t.true(o.verbose);
  t.deepEqual(o.env, [
    ['A', '1'],
    ['B', '2'],
  ]);
  t.deepEqual(o.command, ['-x']);
});

test('--workdir and --entrypoint take a value only when attached (getopt optional arguments)', (t) => {
  const bare = run(['--image=x', '--workdir', '--entrypoint', 'python3']);
  t.deepEqual(bare.workdir, { kind: 'image' });
  t.deepEqual(bare.entrypoint, { kind: 'image' });
  t.deepEqual(bare.command, ['python3']);
  const withValues = run(['--image=x', '--workdir=/w', '--entry=/bin/echo hi', '-w/other']);
  t.deepEqual(withValues.workdir, { kind: 'explicit', dir: '/other' });
  t.deepEqual(withValues.entrypoint, { kind: 'explicit', cmd: '/bin/echo hi' });
  t.deepEqual(run(['-Ew', 'ls']).workdir, { kind: 'image' });
  t.deepEqual(run(['ls']).workdir, { kind: 'host' });
  t.deepEqual(run(['ls']).entrypoint, { kind: 'none' });
});

test('relative --workdir is refused with a hint', (t) => {
  t.throws(() => run(['--workdir=rel', 'ls']), { message: /not an absolute path/ });
});

test('environment defaults and CLI overrides', (t) => {
  const env = {
    SHIFTER_IMAGETYPE: 'id',
    SHIFTER_IMAGE: 'abc',
    SHIFTER_IMAGEREQUEST: 'ubuntu:22.04',
    SHIFTER_VOLUME: '/x:/y',
    SHIFTER_MODULE: 'mpich',
  };
  const fromEnv = run(['ls'], env);
  t.is(fromEnv.image, 'id:abc');
  t.is(fromEnv.imageRequest, 'ubuntu:22.04');
  t.deepEqual(fromEnv.volumes, ['/x:/y']);
  t.deepEqual(fromEnv.modules, { kind: 'list', names: ['mpich'] });
  const cli = run(['--image=debian', '-V', '/p:/q', '--module=none', 'ls'], env);
  t.is(cli.image, 'debian');
  t.is(cli.imageRequest, 'debian');
  t.deepEqual(cli.volumes, ['/p:/q'], 'the first -V discards SHIFTER_VOLUME');
  t.deepEqual(cli.modules, { kind: 'none' });
});

test('SLURM_SPANK_ forms are fallbacks; type without image is ignored', (t) => {
  const o = run(['ls'], { SLURM_SPANK_SHIFTER_IMAGETYPE: 'docker', SLURM_SPANK_SHIFTER_IMAGE: 'ubuntu:22.04' });
  t.is(o.image, 'docker:ubuntu:22.04');
  const lone = run(['ls'], { SHIFTER_IMAGETYPE: 'docker' });
  t.is(lone.image, undefined);
  const req = run(['ls'], { SHIFTER_IMAGEREQUEST: 'centos:8' });
  t.is(req.image, 'centos:8');
});

test('--env rejects a missing =, an empty name or value', (t) => {
  t.throws(() => run(['-e', 'NOEQ', 'ls']), { message: /has no '='/ });
  t.throws(() => run(['-e', '=v', 'ls']), { message: /empty name/ });
  t.throws(() => run(['-e', 'A=', 'ls']), { message: /empty value/ });
});

test('module lists: last one wins, none, invalid names', (t) => {
  t.deepEqual(run(['-m', 'a', '--module=b,c', 'ls']).modules, { kind: 'list', names: ['b', 'c'] });
  t.deepEqual(run(['ls']).modules, { kind: 'default' });
  t.throws(() => run(['-m', 'a_b', 'ls']), { message: /not valid/ });
});

test('unknown options are one-line errors pointing at --help', (t) => {
  const e1 = t.throws(() => run(['--gpu', 'ls']));
  t.regex(e1.message, /unknown option '--gpu'.*shifter --help/);
  const e2 = t.throws(() => run(['-Z', 'ls']));
  t.regex(e2.message, /unknown option '-Z'/);
  t.false(e2.message.includes('\n'));
  t.throws(() => run(['--image']), { message: /argument missing|--image/ });
});

test('-h returns the help text', (t) => {
  const r = parseShifterCommandLine(['-h'], {});
  t.is(r.kind, 'help');
  if (r.kind === 'help') {
    t.regex(r.text, /--image <type:tag>/);
    t.regex(r.text, /--volume/);
    t.regex(r.text, /--entrypoint/);
    t.notRegex(r.text, /x-workdir/);
  }
});
