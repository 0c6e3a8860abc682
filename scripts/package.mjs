// npm run package [-- --version V] [-- --out DIR]: the Debian packages shifter-runtime, shifter-gateway
// and shifter-client (scripts/package/roles.mjs) into dist/packages/, from the built tree (it runs
// `npm run build` first when dist/ is missing). No network: the node_modules each program imports
// are copied from this checkout's install (production packages only, found from the imports).
// --version (default: package.json's) exists so that the upgrade test can build an older package.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { fileClosure, packageClosure } from './package/closure.mjs';
import { MAINTAINER, roles } from './package/roles.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const PREFIX = '/usr/lib/shifter';
/** Debian's upstream-version characters; no epoch, no revision. */
const VERSION_RE = /^[0-9][A-Za-z0-9.+~]*$/;

function fail(message) {
  process.stderr.write(`package: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  const args = { version: manifest.version, out: join(ROOT, 'dist', 'packages'), manifest };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].includes('=') ? argv[i].split(/=(.*)/s) : [argv[i], undefined];
    const value = () => inline ?? argv[++i] ?? fail(`${flag} needs a value`);
    if (flag === '--version') args.version = value();
    else if (flag === '--out') args.out = resolve(value());
    else fail(`unknown argument "${argv[i]}" (use --version V, --out DIR)`);
  }
  if (!VERSION_RE.test(args.version)) fail(`version "${args.version}" is not a Debian version (digits, letters, .+~)`);
  return args;
}

function run(cmd, cmdArgs, opts = {}) {
  return execFileSync(cmd, cmdArgs, { stdio: ['ignore', 'pipe', 'inherit'], ...opts })?.toString() ?? '';
}

/**
 * The native parts again, with the installed paths compiled in (SPANK plugin -> /usr/bin programs) and the
 * package's version; `shifter --help`'s text is the one `npm run build` generated from the option table.
 */
function buildNative(into, version) {
  const help = join(ROOT, 'native', 'build', 'generated', 'shifter-help.h');
  if (!existsSync(help)) fail(`${help} is missing: run npm run build first`);
  mkdirSync(join(into, 'generated'), { recursive: true });
  copyFileSync(help, join(into, 'generated', 'shifter-help.h'));
  run('bash', [join(ROOT, 'native', 'build.sh')], {
    env: {
      ...process.env,
      SHIFTER_VERSION: version,
      SHIFTER_NATIVE_OUT: into,
      SHIFTER_BIN_DIR: '/usr/bin',
      SHIFTER_DEFAULT_UDIROOT_CONF: '/etc/shifter/udiRoot.conf',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  if (!existsSync(join(into, 'shifter_spank.so')))
    fail('the SPANK plugin was not built: install libslurm-dev (spank.h) and run again');
}

/** The wrapper's comment and entry point: `exec node "$here/../dist/X.js"`. */
function wrapperOf(program) {
  const text = readFileSync(join(ROOT, 'bin', program), 'utf8');
  const entry = /exec node "\$here\/\.\.\/(dist\/[^"]+\.js)"/.exec(text)?.[1];
  if (entry === undefined) fail(`bin/${program} does not exec node "$here/../dist/....js"`);
  const comments = text
    .split('\n')
    .slice(1)
    .filter((l) => l.startsWith('#'));
  return { entry, comments };
}

/** A file's mode in a package: 0755 if anyone may execute it, else 0644; never setuid or setgid. */
function normalizeModes(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isSymbolicLink()) continue;
    if (st.isDirectory()) {
      chmodSync(path, 0o755);
      normalizeModes(path);
    } else chmodSync(path, st.mode & 0o111 ? 0o755 : 0o644);
  }
}

function copyInto(stage, target, source, mode) {
  const dest = join(stage, target);
  mkdirSync(dirname(dest), { recursive: true });
  copyFileSync(source, dest);
  if (mode !== undefined) chmodSync(dest, mode);
}

/** The application tree one role needs, under <stage>/usr/lib/shifter/<app>/. */
function stageApp(stage, role, nativeDir, manifest, version) {
  const appRel = join(PREFIX.slice(1), role.app);
  const app = join(stage, appRel);
  const wrappers = role.programs.map((p) => ({ program: p, ...wrapperOf(p) }));
  const { files, packages } = fileClosure(ROOT, [...wrappers.map((w) => w.entry), ...(role.data ?? [])]);
  for (const f of files) copyInto(app, f, join(ROOT, f));
  const packageDirs = packageClosure(ROOT, packages);
  for (const dir of packageDirs) {
    cpSync(join(ROOT, dir), join(app, dir), {
      recursive: true,
      dereference: true,
      filter: (src) => relative(join(ROOT, dir), src).split('/')[0] !== 'node_modules',
    });
  }
  for (const n of role.native) copyInto(app, join('native', 'build', n), join(nativeDir, n));
  const appManifest = { name: manifest.name, version, type: 'module', private: true, license: manifest.license };
  writeFileSync(join(app, 'package.json'), `${JSON.stringify(appManifest, null, 2)}\n`);
  // common/version.ts reads dist/package.json (tsc's copy of the checkout's): it must say the package's version.
  if (files.includes(join('dist', 'package.json'))) {
    writeFileSync(join(app, 'dist', 'package.json'), `${JSON.stringify(appManifest, null, 2)}\n`);
  }
  for (const w of wrappers) {
    const script = ['#!/bin/sh', ...w.comments, `exec /usr/bin/node ${PREFIX}/${role.app}/${w.entry} "$@"`, ''];
    mkdirSync(join(stage, 'usr', 'bin'), { recursive: true });
    writeFileSync(join(stage, 'usr', 'bin', w.program), script.join('\n'), { mode: 0o755 });
  }
  return { files: files.length, packages: packageDirs.length };
}

/** dist/man/man<N>/<page>.<N>, if another part of the build made them, gzipped into the role that owns the page. */
function stageManPages(stages, allRoles) {
  const manRoot = join(ROOT, 'dist', 'man');
  if (!existsSync(manRoot)) return;
  for (const section of readdirSync(manRoot)) {
    for (const page of readdirSync(join(manRoot, section))) {
      const name = page.replace(/\.[0-9][a-z]*$/, '');
      const owner = allRoles.find((r) => r.manPages.includes(name) || r.programs.includes(name)) ?? allRoles[1];
      const dest = join(stages[owner.name], 'usr', 'share', 'man', section, `${page}.gz`);
      mkdirSync(dirname(dest), { recursive: true });
      // gzip -9n: level 9, no name or time in the header, so rebuilding gives the same bytes.
      writeFileSync(dest, gzipSync(readFileSync(join(manRoot, section, page)), { level: 9 }), { mode: 0o644 });
    }
  }
}

function walkFiles(dir, base = dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    const st = lstatSync(path);
    if (st.isDirectory()) return name === 'DEBIAN' && dir === base ? [] : walkFiles(path, base);
    return st.isFile() ? [relative(base, path)] : [];
  });
}

function installedSizeKiB(stage) {
  return Math.ceil(walkFiles(stage).reduce((sum, f) => sum + statSync(join(stage, f)).size, 0) / 1024);
}

function writeControl(stage, role, version, arch) {
  const debian = join(stage, 'DEBIAN');
  mkdirSync(debian, { recursive: true });
  const field = (name, list) => (list.length > 0 ? [`${name}: ${list.join(', ')}`] : []);
  const control = [
    `Package: ${role.name}`,
    `Version: ${version}`,
    `Architecture: ${arch}`,
    `Maintainer: ${MAINTAINER}`,
    `Installed-Size: ${installedSizeKiB(stage)}`,
    ...field('Depends', role.depends),
    ...field('Recommends', role.recommends),
    ...field('Suggests', role.suggests),
    'Section: admin',
    'Priority: optional',
    `Description: ${role.summary}`,
    ...role.description.map((l) => ` ${l}`),
    '',
  ];
  writeFileSync(join(debian, 'control'), control.join('\n'), { mode: 0o644 });
  const conffiles = Object.keys(role.conffiles).map((p) => `/${p}\n`);
  if (conffiles.length > 0) writeFileSync(join(debian, 'conffiles'), conffiles.join(''), { mode: 0o644 });
  const sums = walkFiles(stage)
    .sort()
    .filter((f) => !role.conffiles[f])
    .map(
      (f) =>
        `${createHash('md5')
          .update(readFileSync(join(stage, f)))
          .digest('hex')}  ${f}\n`,
    );
  writeFileSync(join(debian, 'md5sums'), sums.join(''), { mode: 0o644 });
  const scripts = join(ROOT, 'packaging', 'debian', role.name);
  for (const s of existsSync(scripts) ? readdirSync(scripts) : []) copyInto(debian, s, join(scripts, s), 0o755);
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  if (!existsSync(join(ROOT, 'dist', 'node-daemon', 'main.js'))) {
    process.stderr.write('package: dist/ is not built: npm run build\n');
    run('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  }
  const arch = run('dpkg', ['--print-architecture']).trim();
  mkdirSync(args.out, { recursive: true });
  const work = mkdtempSync(join(args.out, '.staging-'));
  try {
    const nativeDir = join(work, 'native');
    buildNative(nativeDir, args.version);
    const allRoles = roles(args.version);
    const stages = Object.fromEntries(allRoles.map((r) => [r.name, join(work, r.name)]));
    const counts = {};
    for (const role of allRoles) {
      const stage = stages[role.name];
      counts[role.name] = stageApp(stage, role, nativeDir, args.manifest, args.version);
      for (const [target, source] of Object.entries({ ...role.files, ...role.conffiles })) {
        const from = source.startsWith('native:') ? join(nativeDir, source.slice(7)) : join(ROOT, source);
        copyInto(stage, target, from);
      }
    }
    stageManPages(stages, allRoles);
    for (const role of allRoles) {
      const stage = stages[role.name];
      normalizeModes(stage);
      writeControl(stage, role, args.version, arch);
      const deb = join(args.out, `${role.name}_${args.version}_${arch}.deb`);
      const partial = join(work, basename(deb));
      run('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', stage, partial]);
      renameSync(partial, deb);
      const { files, packages } = counts[role.name];
      const size = (statSync(deb).size / 1048576).toFixed(1);
      process.stdout.write(`package: ${relative(ROOT, deb)} (${size} MiB: ${files} files, ${packages} npm packages)\n`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

main();
