// Builds the native parts (C helpers and the node-addon-api addon) into native/build/.
// Each piece is small and single-threaded; see native/README.md for what each one does.
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const buildScript = join(nativeDir, 'build.sh');
if (!existsSync(buildScript)) {
  process.exit(0);
}
mkdirSync(join(nativeDir, 'build'), { recursive: true });
execFileSync('bash', [buildScript], { stdio: 'inherit', cwd: nativeDir });
if (readdirSync(join(nativeDir, 'build')).length === 0) {
  console.error('build-native: native/build.sh produced nothing');
  process.exit(1);
}
