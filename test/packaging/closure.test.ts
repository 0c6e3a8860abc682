/**
 * The import scanner of `npm run package` (scripts/package/closure.mjs) on compiled code: what a
 * module imports, and nothing that only looks like an import.
 */
import test from 'ava';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));

type References = (source: string) => string[];

/** The scanner's `references` over `lines` joined, sorted. */
async function referencesIn(lines: string[]): Promise<string[]> {
  const closure = (await import(pathToFileURL(join(REPO, 'scripts/package/closure.mjs')).href)) as {
    references: References;
  };
  return closure.references(lines.join('\n')).sort();
}

test('static, side-effect, dynamic and require imports, and URLs of data files, are found', async (t) => {
  const found = await referencesIn([
    "import { a } from './a.js';",
    'export { b } from "../b.js";',
    "import 'side-effect';",
    "const c = await import('./c.js');",
    "const fuse = require('fuse-native');",
    "const lru = createRequire(import.meta.url)('lru-cache');",
    "const proto = new URL('../proto/x.proto', import.meta.url);",
  ]);
  t.deepEqual(found, ['../b.js', '../proto/x.proto', './a.js', './c.js', 'fuse-native', 'lru-cache', 'side-effect']);
});

test("the words from and import inside strings or as names are not imports (['from', from] once was)", async (t) => {
  const found = await referencesIn([
    'for (const [what, path] of [',
    "    ['from', from],",
    "    ['to', to],",
    ']) {}',
    "const word = 'import';",
    "Buffer.from('bytes');",
    "items.from ('x');",
  ]);
  t.deepEqual(found, []);
});
