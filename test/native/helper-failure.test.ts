/**
 * shifter-nshelper's failure replies: the classes of native/nshelper/failure.h and the one
 * TypeScript union agree, each class maps to its ErrorCode, and a real failure carries its
 * errno and class to the daemon. The helper part needs root.
 */
import test from 'ava';
import { rootTest } from '../helpers/privileges.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attachImage } from '../../node-daemon/adapters/index.js';
import {
  HookFailure,
  HELPER_FAILURE_CLASSES,
  helperFailureError,
  parseHelperFailure,
  type HelperFailure,
} from '../../node-daemon/adapters/helper-failure.js';

test('the failure classes of native/nshelper/failure.{h,c} are those of helper-failure.ts, in the same order', (t) => {
  const header = readFileSync(join(process.cwd(), 'native/nshelper/failure.h'), 'utf8');
  const source = readFileSync(join(process.cwd(), 'native/nshelper/failure.c'), 'utf8');
  const names = /failure_class_names\[\] = \{([^}]*)\}/.exec(source)?.[1];
  t.truthy(names, 'failure_class_names is defined');
  t.deepEqual(
    [...names!.matchAll(/"([a-z]+)"/g)].map((m) => m[1]),
    [...HELPER_FAILURE_CLASSES],
  );
  const enumBody = /enum failure_class \{([^}]*)\}/.exec(header)?.[1] ?? '';
  t.deepEqual(
    [...enumBody.matchAll(/FAILURE_([A-Z]+),/g)].map((m) => m[1].toLowerCase()),
    [...HELPER_FAILURE_CLASSES],
  );
});

test('a hook failure carries the hook exit code the launch exits with', (t) => {
  const e = helperFailureError(parseHelperFailure('error 124 hook shifter-nshelper: module x userhook /h.sh: killed')!);
  t.true(e instanceof HookFailure);
  t.is((e as HookFailure).exitCode, 124);
  t.is(e.message, 'shifter-nshelper: module x userhook /h.sh: killed');
});

test('a failure reply becomes the error code of its class, its text the message as sent', (t) => {
  const codes = Object.fromEntries(
    HELPER_FAILURE_CLASSES.map((c) => {
      const f = parseHelperFailure(`error 13 ${c} shifter-nshelper: step: /a  b: Permission denied`)!;
      t.is(f.text, 'shifter-nshelper: step: /a  b: Permission denied');
      t.is(f.errno, 13);
      return [c, helperFailureError(f).code];
    }),
  );
  t.deepEqual(codes, {
    system: 'IO_ERROR',
    denied: 'PERMISSION_DENIED',
    missing: 'NOT_FOUND',
    unsafe: 'UNSAFE_CONTENT',
    spec: 'INTERNAL',
    program: 'IO_ERROR',
    hook: 'IO_ERROR',
  });
  t.is(parseHelperFailure('ok us=12'), undefined);
  t.is(parseHelperFailure('loop=/dev/loop3'), undefined);
});

test('a malformed failure reply is an internal error that quotes it', (t) => {
  for (const reply of [
    'error shifter-nshelper: old style: No such file or directory',
    'error 2 nosuchclass text',
    'error x missing text',
    'error 2 missing',
  ]) {
    const err = helperFailureError(parseHelperFailure(reply)!);
    t.is(err.code, 'INTERNAL');
    t.is(err.message, `shifter-nshelper sent a malformed failure reply: ${reply}`);
  }
});

rootTest('a real helper failure reaches the daemon with its errno and class', async (t) => {
  const err = await t.throwsAsync(attachImage('/nonexistent/image.sqfs'));
  t.is((err as Error & { code?: string }).code, 'NOT_FOUND');
  t.is(err.message, 'shifter-nshelper: open image: /nonexistent/image.sqfs: No such file or directory');
  t.like((err as Error & { cause?: HelperFailure }).cause, { errno: 2, failureClass: 'missing' });
  const dir = await t.throwsAsync(attachImage('/'));
  t.like((dir as Error & { cause?: HelperFailure }).cause, { errno: 22, failureClass: 'system' });
  t.is(dir.message, 'shifter-nshelper: open image: /: Invalid argument');
});
