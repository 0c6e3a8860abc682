import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ShifterError } from '../../../common/errors.js';
import type { ImageId } from '../../../common/image-descriptor.js';
import { createLogger } from '../../../common/logger.js';
import type { ImageFacts } from '../../../node-daemon/lazy/chunk-source.js';
import { FactsCache, type FactsKeeper } from '../../../node-daemon/lazy/facts-cache.js';
import { FactsFiles } from '../../../node-daemon/lazy/facts-files.js';

const ID = 'a'.repeat(64) as ImageId;
const facts = (meta: string): ImageFacts => ({ indexDigest: 'b'.repeat(64), meta });

function cacheOver(answers: Array<ImageFacts | ShifterError>, keeper?: FactsKeeper) {
  let now = 0;
  let asked = 0;
  const cache = new FactsCache({
    ttlMs: 60_000,
    log: createLogger('test', 'silent'),
    keeper,
    now: () => now,
    fetch: () => {
      const answer = answers[Math.min(asked++, answers.length - 1)];
      return answer instanceof ShifterError ? Promise.reject(answer) : Promise.resolve(answer);
    },
  });
  return { cache, asked: () => asked, advance: (ms: number) => (now += ms) };
}

test('facts are reused for the TTL, then asked again: a re-pulled tag changes the ACL within it', async (t) => {
  const c = cacheOver([facts('USERACL: 1'), facts('USERACL: 2')]);
  t.is((await c.cache.get(ID)).meta, 'USERACL: 1');
  c.advance(59_000);
  t.is((await c.cache.get(ID)).meta, 'USERACL: 1');
  t.is(c.asked(), 1);
  c.advance(2_000);
  t.is((await c.cache.get(ID)).meta, 'USERACL: 2');
  t.is(c.asked(), 2);
});

test('concurrent launches of one image ask once', async (t) => {
  const c = cacheOver([facts('m')]);
  await Promise.all([c.cache.get(ID), c.cache.get(ID), c.cache.get(ID)]);
  t.is(c.asked(), 1);
});

test('gateway unreachable: the facts last seen are used; an image the gateway no longer has is an error', async (t) => {
  const down = new ShifterError('UNREACHABLE', 'cannot fetch what the gateway recorded: connection refused');
  const c = cacheOver([facts('m'), down]);
  await t.throwsAsync(cacheOver([down]).cache.get(ID), { message: /connection refused/ });
  await c.cache.get(ID);
  c.advance(120_000);
  t.is((await c.cache.get(ID)).meta, 'm');
  const gone = cacheOver([facts('m'), new ShifterError('NOT_FOUND', 'not at the gateway (404)')]);
  await gone.cache.get(ID);
  gone.advance(120_000);
  await t.throwsAsync(gone.cache.get(ID), { message: /404/ });
});

test('after a fallback the facts serve a TTL before the gateway is tried again: one slow launch per TTL', async (t) => {
  const down = new ShifterError('UNREACHABLE', 'connection refused');
  const c = cacheOver([facts('m'), down, down, facts('n')]);
  await c.cache.get(ID);
  c.advance(61_000);
  t.is((await c.cache.get(ID)).meta, 'm');
  t.is(c.asked(), 2);
  c.advance(30_000);
  t.is((await c.cache.get(ID)).meta, 'm', 'within the TTL of the fallback: not asked');
  t.is(c.asked(), 2);
  c.advance(31_000);
  t.is((await c.cache.get(ID)).meta, 'm');
  c.advance(61_000);
  t.is((await c.cache.get(ID)).meta, 'n', 'the gateway back: its answer');
  t.is(c.asked(), 4);
});

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'shifter-facts-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('facts kept on disk outlive a restart and serve while the gateway is down; never an unseen image', async (t) => {
  const dir = join(tempDir(t), 'facts');
  const down = new ShifterError('UNREACHABLE', 'connection refused');
  const before = cacheOver([facts('USERACL: 1')], new FactsFiles(dir));
  await before.cache.get(ID);
  // A new shifterd (empty memory) with the gateway down.
  const after = cacheOver([down], new FactsFiles(dir));
  t.deepEqual(await after.cache.get(ID), facts('USERACL: 1'));
  const other = 'c'.repeat(64) as ImageId;
  await t.throwsAsync(after.cache.get(other), { message: /connection refused/ });
});

test('a damaged facts file is not trusted', async (t) => {
  const dir = tempDir(t);
  const files = new FactsFiles(dir);
  await files.write(ID, { facts: facts('m'), seenAt: 5 });
  t.deepEqual(await files.read(ID), { facts: facts('m'), seenAt: 5 });
  for (const text of ['{"indexDigest":"xyz","meta":"m","seenAt":1}', '{"indexDigest":', '[]']) {
    writeFileSync(join(dir, `${ID}.json`), text);
    t.is(await files.read(ID), undefined, text);
  }
  t.is(await files.read('d'.repeat(64) as ImageId), undefined);
});
