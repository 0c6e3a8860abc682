// What a program needs at run time, found from its compiled entry point: the dist/ files it imports
// (static and dynamic imports, require() and `new URL('...', import.meta.url)` references, which also
// name data files such as proto/shifterd.proto), and the npm packages it imports with their own
// production dependencies. Pure reading: nothing is copied here.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';

// A specifier is one token on one line; `from` and `import` count only as keywords, not inside a
// string: `['from', from]` in compiled code once read as an import of "', from],\n  [".
const SPEC = String.raw`['"]([^'"\s,]+)['"]`;
const REFERENCES = [
  new RegExp(String.raw`(?<![\w'"$.])from\s*${SPEC}`, 'g'),
  new RegExp(String.raw`(?<![\w'"$.])import\s*${SPEC}`, 'g'),
  new RegExp(String.raw`\bimport\(\s*${SPEC}\s*\)`, 'g'),
  new RegExp(String.raw`\brequire\(\s*${SPEC}\s*\)`, 'g'),
  new RegExp(String.raw`\bcreateRequire\([^)]*\)\(\s*${SPEC}\s*\)`, 'g'),
  new RegExp(String.raw`\bnew URL\(\s*${SPEC}\s*,\s*import\.meta\.url\s*\)`, 'g'),
];

const builtins = new Set(builtinModules);

function isBuiltin(spec) {
  return spec.startsWith('node:') || builtins.has(spec) || builtins.has(spec.split('/')[0]);
}

/** 'a/b/c' -> 'a'; '@s/a/b' -> '@s/a'. */
export function packageName(spec) {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The specifiers a compiled module refers to. */
export function references(source) {
  const out = new Set();
  for (const re of REFERENCES) for (const m of source.matchAll(re)) out.add(m[1]);
  return [...out];
}

/**
 * Files under `root` (paths relative to it) that the entries reach, and the npm package names
 * they import. A relative reference that does not exist is an error: the package would break.
 */
export function fileClosure(root, entries) {
  const files = new Set();
  const packages = new Set();
  const queue = entries.map((e) => resolve(root, e));
  while (queue.length > 0) {
    const file = queue.pop();
    const rel = relative(root, file);
    if (files.has(rel)) continue;
    if (!existsSync(file)) throw new Error(`${rel} is referenced but does not exist (run npm run build)`);
    // A directory reference (new URL('../../../', import.meta.url): the application root) names no file.
    if (statSync(file).isDirectory()) continue;
    files.add(rel);
    if (!file.endsWith('.js') && !file.endsWith('.mjs')) continue;
    for (const spec of references(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.') || spec.startsWith('/')) queue.push(resolve(dirname(file), spec));
      else if (!isBuiltin(spec)) packages.add(packageName(spec));
    }
  }
  return { files: [...files].sort(), packages: [...packages].sort() };
}

/** The directory Node would load package `name` from when required from `fromDir` (inside root). */
function findPackageDir(root, fromDir, name) {
  for (let dir = fromDir; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dir === root || !dir.startsWith(root + sep)) return undefined;
  }
}

/**
 * The package directories (relative to root) that `names` need, with their dependencies,
 * optionalDependencies and peerDependencies, as installed under root/node_modules. A missing
 * required dependency is an error; a missing optional or peer one is not needed.
 */
export function packageClosure(root, names) {
  const dirs = new Set();
  const queue = names.map((name) => ({ name, from: root, required: true }));
  while (queue.length > 0) {
    const { name, from, required } = queue.pop();
    // Type declarations only (protobufjs lists @types/node as a dependency): nothing loads them.
    if (name.startsWith('@types/')) continue;
    const dir = findPackageDir(root, from, name);
    if (dir === undefined) {
      if (required)
        throw new Error(`npm package ${name} (needed from ${relative(root, from) || '.'}) is not installed`);
      continue;
    }
    const rel = relative(root, dir);
    if (dirs.has(rel)) continue;
    dirs.add(rel);
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    // npm lists an optional dependency under dependencies too.
    const optional = new Set(Object.keys({ ...manifest.optionalDependencies, ...manifest.peerDependencies }));
    for (const dep of Object.keys(manifest.dependencies ?? {}))
      if (!optional.has(dep)) queue.push({ name: dep, from: dir, required: true });
    for (const dep of optional) queue.push({ name: dep, from: dir, required: false });
  }
  return [...dirs].sort();
}
