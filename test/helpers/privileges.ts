/**
 * Tests that need root (loop devices, mounts, namespaces, other users' identities through useradd, setpriv or
 * runuser, shifterd and the native helper) register through `rootTest`: in a file where every test needs root,
 * `import { rootTest as test } from './privileges.js'` in place of ava's default; in a file of unit tests,
 * `rootTest(...)` for the few that need it. As root, `rootTest` is ava's `test`. As any other user each test and
 * hook registered through it is skipped (ava counts and lists the skipped tests) and the file prints once why, so
 * the unit tests run as anybody.
 */
import test, { type TestFn } from 'ava';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const isRoot = process.getuid?.() === 0;

type Register = (...args: unknown[]) => void;

// ava's chains below `test`: serial, failing and the hooks (with `.always`), each with its own `.skip`.
const CHAINS = ['serial', 'failing', 'before', 'beforeEach', 'after', 'afterEach', 'always'] as const;

let announced = false;

function announce(): void {
  if (announced) return;
  announced = true;
  const file = relative(process.cwd(), fileURLToPath(test.meta.file))
    .replace(/^dist\//, '')
    .replace(/\.js$/, '.ts');
  console.log(
    `${file}: tests that need root are SKIPPED (running as uid ${process.getuid?.()}): they use loop devices, ` +
      'mounts, namespaces, other users or shifterd; run npm test as root to run them',
  );
}

/** `chain` with every registration, its own and its sub-chains', sent to the matching `.skip`. */
function skipping(chain: object): Register {
  const links = chain as Record<string, unknown>;
  const skip = links.skip as Register;
  const register: Register = (...args) => {
    announce();
    skip(...args);
  };
  const fn = register as Register & Record<string, unknown>;
  fn.skip = register;
  fn.only = register;
  for (const name of CHAINS) {
    if (typeof links[name] === 'function') fn[name] = skipping(links[name]);
  }
  return register;
}

function unprivileged(): TestFn {
  const skipped = skipping(test) as Register & Record<string, unknown>;
  // ava's own todo, macro and meta: a todo registers no test body, so there is nothing to skip.
  skipped.todo = test.todo;
  skipped.macro = test.macro;
  skipped.meta = test.meta;
  return skipped as unknown as TestFn;
}

export const rootTest: TestFn = isRoot ? test : unprivileged();
