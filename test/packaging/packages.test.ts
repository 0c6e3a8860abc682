/**
 * The Debian packages as a site admin meets them: `npm run package` builds them; their contents,
 * control fields, conffiles and units are checked; then, in a fresh Debian root (debootstrap), the
 * packages of an older version install with their Depends from the mirror, the installed shifterimg,
 * gateway and shifterd run (an ordinary user launches an image), an upgrade keeps the changed
 * config and a running container while the restarted shifterd serves new launches, and purge
 * leaves nothing but the changed config. The steps run in order and share one root.
 */
import test from 'ava';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { rootTest } from '../helpers/privileges.js';
import { buildImages } from '../node-daemon/runtime-fixture.js';
import { DebianRoot, cachedDebootstrap, repackedNodejs } from './debian-root.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
const OLD_VERSION = '0.0.1';
const NAMES = ['shifter-client', 'shifter-runtime', 'shifter-gateway'] as const;
type PackageName = (typeof NAMES)[number];
const ARCH = execFileSync('dpkg', ['--print-architecture']).toString().trim();
const MINUTES = 60_000;

const work = mkdtempSync(join(tmpdir(), 'shifter-packages-test-'));
const debPath = (version: string, name: PackageName): string => join(work, version, `${name}_${version}_${ARCH}.deb`);

function sh(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 256 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr });
    });
  });
}

async function buildPackages(version: string): Promise<string> {
  const r = await sh(process.execPath, [
    join(REPO, 'scripts', 'package.mjs'),
    '--version',
    version,
    '--out',
    join(work, version),
  ]);
  if (r.code !== 0) throw new Error(`npm run package failed (${r.code}):\n${r.stderr}`);
  return r.stdout;
}

interface Entry {
  mode: string;
  owner: string;
  path: string;
  link?: string;
}

async function contents(deb: string): Promise<Entry[]> {
  const r = await sh('dpkg-deb', ['--contents', deb]);
  return r.stdout
    .trim()
    .split('\n')
    .map((line) => {
      const [mode, owner, , , , ...rest] = line.split(/\s+/);
      const [path, link] = rest.join(' ').split(' -> ');
      return { mode: mode, owner: owner, path: path.replace(/^\./, ''), link };
    });
}

async function field(deb: string, name: string): Promise<string> {
  return (await sh('dpkg-deb', ['--field', deb, name])).stdout.trim();
}

test.after.always(() => rmSync(work, { recursive: true, force: true }));

test.serial('npm run package builds shifter-client, shifter-runtime and shifter-gateway', async (t) => {
  t.timeout(15 * MINUTES);
  const out = await buildPackages(VERSION);
  for (const name of NAMES) {
    t.true(existsSync(debPath(VERSION, name)), `${name} was not built:\n${out}`);
    t.is(await field(debPath(VERSION, name), 'Version'), VERSION);
  }
});

test.serial('the packages hold the programs, units and configs of their role', async (t) => {
  const paths = async (name: PackageName) => new Set((await contents(debPath(VERSION, name))).map((e) => e.path));
  const client = await paths('shifter-client');
  const runtime = await paths('shifter-runtime');
  const gateway = await paths('shifter-gateway');
  for (const p of ['/usr/bin/shifterimg', '/etc/shifter/udiRoot.conf', '/usr/lib/shifter/client/package.json'])
    t.true(client.has(p), p);
  for (const p of [
    '/usr/bin/shifter',
    '/usr/bin/shifterd',
    '/usr/bin/shifter-job-check',
    '/usr/bin/shifter-job-env',
    '/usr/bin/shifterd-cache',
    '/usr/bin/prep-mpi',
    '/usr/bin/prep-gpu',
    '/usr/lib/shifter/shifter_spank.so',
    '/usr/lib/shifter/runtime/native/build/shifter-nshelper',
    '/usr/lib/shifter/runtime/native/build/shifter_native.node',
    '/usr/lib/shifter/runtime/proto/shifterd.proto',
    '/usr/lib/shifter/runtime/node_modules/fuse-native/package.json',
    '/lib/systemd/system/shifterd.service',
    '/usr/lib/tmpfiles.d/shifter.conf',
    '/etc/logrotate.d/shifterd',
  ])
    t.true(runtime.has(p), p);
  for (const p of [
    '/usr/bin/shifter-gateway',
    '/etc/shifter/imagemanager.json',
    '/lib/systemd/system/shifter-gateway.service',
    '/etc/logrotate.d/shifter-gateway',
    '/usr/lib/shifter/gateway/native/build/shifter_native.node',
    '/usr/lib/shifter/gateway/node_modules/better-sqlite3/package.json',
  ])
    t.true(gateway.has(p), p);
  // No file in two packages: dpkg would refuse to install the second.
  const all = [...client, ...runtime, ...gateway].filter((p) => !p.endsWith('/'));
  t.deepEqual(
    all.filter((p, i) => all.indexOf(p) !== i),
    [],
  );
  // The SPANK plugin runs the installed job programs, not a checkout's.
  const spank = join(work, 'spank');
  execFileSync('dpkg-deb', ['-x', debPath(VERSION, 'shifter-runtime'), spank]);
  const strings = execFileSync('strings', [join(spank, 'usr/lib/shifter/shifter_spank.so')]).toString();
  t.true(strings.includes('/usr/bin/shifter-job-check') && strings.includes('/usr/bin/shifter-job-env'));
  t.false(strings.includes(REPO));
});

test.serial('every file is root-owned and nothing is setuid or setgid', async (t) => {
  for (const name of NAMES) {
    for (const e of await contents(debPath(VERSION, name))) {
      t.is(e.owner, 'root/root', `${name}: ${e.path}`);
      t.notRegex(e.mode, /[sS]/, `${name}: ${e.path} is setuid or setgid (${e.mode})`);
      if (e.path.startsWith('/usr/bin/') && !e.path.endsWith('/')) t.is(e.mode, '-rwxr-xr-x', `${name}: ${e.path}`);
      if (e.path.startsWith('/etc/')) t.regex(e.mode, /^(d|-rw-r--r--)/, `${name}: ${e.path}`);
    }
  }
});

test.serial('only production npm packages are bundled', async (t) => {
  for (const name of NAMES) {
    const modules = new Set(
      (await contents(debPath(VERSION, name)))
        .map((e) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\/$/.exec(e.path)?.[1])
        .filter((m) => m !== undefined),
    );
    for (const dev of ['typescript', 'ava', 'eslint', 'prettier', '@types/node', 'typescript-eslint'])
      t.false(modules.has(dev), `${name} bundles the dev package ${dev}`);
  }
});

test.serial('conffiles are the configs; Depends name what each role runs', async (t) => {
  const conffiles = async (name: PackageName) => {
    const dir = join(work, `control-${name}`);
    execFileSync('dpkg-deb', ['--control', debPath(VERSION, name), dir]);
    return existsSync(join(dir, 'conffiles')) ? readFileSync(join(dir, 'conffiles'), 'utf8').trim().split('\n') : [];
  };
  t.deepEqual(await conffiles('shifter-client'), ['/etc/shifter/udiRoot.conf']);
  t.deepEqual(await conffiles('shifter-runtime'), ['/etc/logrotate.d/shifterd']);
  t.deepEqual(await conffiles('shifter-gateway'), [
    '/etc/shifter/imagemanager.json',
    '/etc/logrotate.d/shifter-gateway',
  ]);
  const depends = async (name: PackageName) => (await field(debPath(VERSION, name), 'Depends')).split(', ');
  t.true((await depends('shifter-client')).includes('nodejs (>= 20)'));
  t.true((await depends('shifter-client')).includes('munge'));
  const runtime = await depends('shifter-runtime');
  for (const d of [`shifter-client (= ${VERSION})`, 'nodejs (>= 20)', 'munge', 'libfuse2'])
    t.true(runtime.includes(d), d);
  const gateway = await depends('shifter-gateway');
  for (const d of ['nodejs (>= 20)', 'munge', 'squashfs-tools-ng', 'zstd', 'adduser']) t.true(gateway.includes(d), d);
  for (const name of NAMES) {
    const dir = join(work, `control-${name}`);
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const path = join(dir, script);
      if (!existsSync(path)) continue;
      const text = readFileSync(path, 'utf8');
      t.true(text.startsWith('#!/bin/sh\n'), `${name} ${script}`);
      t.regex(text, /^set -e$/m, `${name} ${script}`);
      t.is((await sh('sh', ['-n', path])).code, 0, `${name} ${script} does not parse`);
    }
  }
});

test.serial('systemd-analyze verify accepts the units', async (t) => {
  // No systemd runs here: verify loads the units offline. It checks the syntax and values of every
  // directive, that Exec* programs exist and are executable (so they point into the unpacked
  // package) and unit dependencies; it cannot start them, check User= exists, or try the sandbox.
  const root = join(work, 'units');
  execFileSync('dpkg-deb', ['-x', debPath(VERSION, 'shifter-runtime'), root]);
  execFileSync('dpkg-deb', ['-x', debPath(VERSION, 'shifter-gateway'), root]);
  const units: string[] = [];
  for (const unit of ['shifterd.service', 'shifter-gateway.service']) {
    const text = readFileSync(join(root, 'lib/systemd/system', unit), 'utf8');
    t.regex(text, /^Type=notify$/m, unit);
    const path = join(work, unit);
    writeFileSync(path, text.replace(/^(Exec\w+=)\/usr\/bin\//gm, `$1${root}/usr/bin/`));
    units.push(path);
  }
  t.regex(readFileSync(units[0], 'utf8'), /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  t.regex(readFileSync(units[1], 'utf8'), /^User=shifter$/m);
  const r = await sh('systemd-analyze', ['verify', '--man=no', ...units]);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  // systemd's exposure score of the gateway's sandbox (0 = locked down, 10 = none): 1.8 as shipped.
  const security = await sh('systemd-analyze', ['security', '--offline=yes', '--threshold=25', units[1]]);
  t.is(security.code, 0, `the gateway's unit lost its hardening:\n${security.stdout}`);
});

// The rest installs into one Debian root, in order.
let root: DebianRoot | undefined;
const user = 'pkguser';
let imageName = '';
let container: ReturnType<DebianRoot['start']> | undefined;
let shifterd: ReturnType<DebianRoot['start']> | undefined;

rootTest.after.always(async () => {
  await root?.destroy();
});

function inRoot(): DebianRoot {
  if (root === undefined) throw new Error('the Debian root was not made (an earlier step failed)');
  return root;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function waitFor(what: string, output: () => string, pattern: RegExp, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!pattern.test(output())) {
    if (Date.now() > deadline) throw new Error(`${what} did not log ${pattern}:\n${output()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startShifterd(t: { log: (s: string) => void }): Promise<void> {
  shifterd = inRoot().start(['/usr/bin/shifterd', '--config', '/etc/shifter/udiRoot.conf']);
  await waitFor('shifterd', shifterd.output, /shifterd ready/);
  t.log(`shifterd pid ${shifterd.child.pid}`);
}

async function stopShifterd(): Promise<void> {
  const child = shifterd?.child;
  shifterd = undefined;
  if (child === undefined || child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  process.kill(child.pid!, 'SIGTERM');
  await exited;
}

function launch(args: string[]) {
  return inRoot().run(['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '/usr/bin/shifter', ...args]);
}

async function apt(args: string[]): Promise<void> {
  const r = await inRoot().run(['apt-get', '-q', '-y', '--no-install-recommends', ...args]);
  if (r.code !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
}

rootTest.serial('an older version builds from the same tree (the upgrade starts from it)', async (t) => {
  t.timeout(15 * MINUTES);
  await buildPackages(OLD_VERSION);
  t.is(
    await field(debPath(OLD_VERSION, 'shifter-runtime'), 'Depends').then((d) => d.split(', ')[0]),
    `shifter-client (= ${OLD_VERSION})`,
  );
});

rootTest.serial('a fresh Debian root is made (debootstrap, cached by day)', async (t) => {
  t.timeout(20 * MINUTES);
  root = await DebianRoot.create(cachedDebootstrap());
  const nodejs = repackedNodejs();
  execFileSync('cp', [nodejs, join(root.dir, 'tmp', 'nodejs.deb')]);
  const update = await root.run(['apt-get', '-q', 'update']);
  t.is(update.code, 0, update.stderr);
  t.is((await root.run(['dpkg-query', '-W', 'shifter-runtime'])).code, 1, 'the root is not fresh');
});

rootTest.serial('the packages install with their Depends from the mirror', async (t) => {
  t.timeout(20 * MINUTES);
  const r = inRoot();
  for (const name of NAMES) execFileSync('cp', [debPath(OLD_VERSION, name), join(r.dir, 'tmp')]);
  await apt(['install', '/tmp/nodejs.deb', ...NAMES.map((n) => `/tmp/${n}_${OLD_VERSION}_${ARCH}.deb`)]);
  for (const name of NAMES) {
    const q = await r.run(['dpkg-query', '-W', '-f=${Status} ${Version}', name]);
    t.is(q.stdout, `install ok installed ${OLD_VERSION}`, name);
  }
  const stat = await r.run([
    'stat',
    '-c',
    '%n %a %U:%G',
    '/run/shifter',
    '/var/lib/shifter',
    '/var/lib/shifter/gateway',
  ]);
  t.is(
    stat.stdout,
    '/run/shifter 755 root:root\n/var/lib/shifter 755 root:root\n/var/lib/shifter/gateway 750 shifter:shifter\n',
  );
  t.regex((await r.run(['getent', 'passwd', 'shifter'])).stdout, /^shifter:x:\d+:\d+:.*:\/usr\/sbin\/nologin$/m);
  t.deepEqual(r.processesInside(), [], 'a maintainer script left a process running');
});

rootTest.serial('the installed shifterimg runs; every installed program prints the package version', async (t) => {
  const help = await inRoot().run(['shifterimg', '--help']);
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /^Usage: shifterimg/);
  for (const program of ['shifterimg', 'shifter', 'shifterd', 'shifter-gateway', 'shifter-node-check']) {
    const version = await inRoot().run([program, '--version']);
    t.is(version.code, 0, `${program}: ${version.stderr}`);
    t.is(version.stdout, `shifter-ts ${OLD_VERSION}\n`, program);
  }
});

rootTest.serial('the installed gateway answers /api/list/<system>/ as the shifter user', async (t) => {
  const r = inRoot();
  const port = await freePort();
  const gateway = r.start([
    'setpriv',
    '--reuid=shifter',
    '--regid=shifter',
    '--init-groups',
    '/usr/bin/shifter-gateway',
    '--config',
    '/etc/shifter/imagemanager.json',
    '--listen',
    `127.0.0.1:${port}`,
  ]);
  try {
    await waitFor('shifter-gateway', gateway.output, /listening on/);
    const res = await fetch(`http://127.0.0.1:${port}/api/list/mycluster/`);
    t.is(res.status, 200);
    t.deepEqual(await res.json(), { list: [] });
    const uid = readFileSync(`/proc/${gateway.child.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)?.[1];
    t.is(uid, (await r.run(['id', '-u', 'shifter'])).stdout.trim());
    t.true(existsSync(join(r.dir, 'var/lib/shifter/gateway/gateway.sqlite')));
  } finally {
    const exited = new Promise((resolve) => gateway.child.once('exit', resolve));
    process.kill(gateway.child.pid!, 'SIGTERM');
    await exited;
  }
});

rootTest.serial('shifterd starts with the packaged config and an ordinary user launches an image', async (t) => {
  t.timeout(5 * MINUTES);
  const r = inRoot();
  const conf = join(r.dir, 'etc/shifter/udiRoot.conf');
  writeFileSync(conf, readFileSync(conf, 'utf8').replace(/^imagePath=.*$/m, 'imagePath=/srv/images'));
  mkdirSync(join(r.dir, 'srv/images'), { recursive: true, mode: 0o700 });
  // The image's files are hard-linked into imagePath: build them on the root's filesystem.
  imageName = buildImages(join(r.dir, 'srv/images'), mkdtempSync(join(r.dir, 'tmp', 'image-'))).bare.name;
  t.is((await r.run(['useradd', '--create-home', user])).code, 0);
  await startShifterd(t);
  const out = await launch([`--image=${imageName}`, 'cat', '/etc/image-release']);
  t.is(out.stdout, 'test image\n', out.stderr);
  const id = await launch([`--image=${imageName}`, 'id', '-un']);
  t.is(id.stdout, `${user}\n`, id.stderr);
});

rootTest.serial(
  'an upgrade keeps the changed config and a running container; the restarted shifterd serves new launches',
  async (t) => {
    t.timeout(10 * MINUTES);
    const r = inRoot();
    container = r.start([
      'setpriv',
      `--reuid=${user}`,
      `--regid=${user}`,
      '--init-groups',
      '/usr/bin/shifter',
      `--image=${imageName}`,
      'sleep',
      '3600',
    ]);
    const pid = container.child.pid!;
    const deadline = Date.now() + 60_000;
    while (!existsSync(`/proc/${pid}/root/etc/image-release`)) {
      if (Date.now() > deadline || container.child.exitCode !== null)
        throw new Error(`the container did not start: ${container.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    for (const name of NAMES) execFileSync('cp', [debPath(VERSION, name), join(r.dir, 'tmp')]);
    await apt(['install', ...NAMES.map((n) => `/tmp/${n}_${VERSION}_${ARCH}.deb`)]);
    for (const name of NAMES) t.is((await r.run(['dpkg-query', '-W', '-f=${Version}', name])).stdout, VERSION, name);
    t.regex(readFileSync(join(r.dir, 'etc/shifter/udiRoot.conf'), 'utf8'), /^imagePath=\/srv\/images$/m);
    t.false(existsSync(join(r.dir, 'etc/shifter/udiRoot.conf.dpkg-dist')));
    // No systemd here to run postinst's try-restart: restart shifterd as systemctl would.
    await stopShifterd();
    t.is(container.child.exitCode, null, 'the container died with shifterd');
    t.is(readFileSync(`/proc/${pid}/root/etc/image-release`, 'utf8'), 'test image\n');
    await startShifterd(t);
    const out = await launch([`--image=${imageName}`, 'cat', '/etc/image-release']);
    t.is(out.stdout, 'test image\n', out.stderr);
    t.is(container.child.exitCode, null);
    t.is(readFileSync(`/proc/${pid}/root/etc/image-release`, 'utf8'), 'test image\n');
  },
);

rootTest.serial('purge removes everything the packages made but the changed config', async (t) => {
  t.timeout(5 * MINUTES);
  const r = inRoot();
  await stopShifterd();
  if (container !== undefined) {
    const exited = new Promise((resolve) => container!.child.once('exit', resolve));
    process.kill(container.child.pid!, 'SIGKILL');
    await exited;
  }
  const changed = readFileSync(join(r.dir, 'etc/shifter/udiRoot.conf'), 'utf8');
  const purge = await r.run(['dpkg', '--purge', ...NAMES]);
  t.is(purge.code, 0, purge.stderr);
  const gone = [
    'usr/lib/shifter',
    'usr/bin/shifter',
    'usr/bin/shifterd',
    'usr/bin/shifterimg',
    'usr/bin/shifter-gateway',
    'lib/systemd/system/shifterd.service',
    'lib/systemd/system/shifter-gateway.service',
    'usr/lib/tmpfiles.d/shifter.conf',
    'etc/logrotate.d/shifterd',
    'etc/logrotate.d/shifter-gateway',
    'etc/shifter/udiRoot.conf',
    'etc/shifter/imagemanager.json',
    'run/shifter',
    'var/lib/shifter',
    'var/cache/shifter',
    'var/backups/shifter-client',
  ];
  for (const p of gone) t.false(existsSync(join(r.dir, p)), `/${p} is left after purge`);
  t.is(readFileSync(join(r.dir, 'etc/shifter/udiRoot.conf.changed-before-purge'), 'utf8'), changed);
  t.deepEqual((await r.run(['ls', '-A', '/etc/shifter'])).stdout, 'udiRoot.conf.changed-before-purge\n');
  // Reinstalling after the purge does not stop at a conffile question.
  await apt(['install', `/tmp/shifter-client_${VERSION}_${ARCH}.deb`]);
  t.regex(readFileSync(join(r.dir, 'etc/shifter/udiRoot.conf'), 'utf8'), /^imagePath=\/var\/lib\/shifter\/images$/m);
});
