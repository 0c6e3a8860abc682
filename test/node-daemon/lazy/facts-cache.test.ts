import test from 'ava';
import { ShifterError } from '../../../common/errors.js';
import type { ImageId } from '../../../common/image-descriptor.js';
import { createLogger } from '../../../common/logger.js';
import type { ImageFacts } from '../../../node-daemon/lazy/chunk-source.js';
import { FactsCache } from '../../../node-daemon/lazy/facts-cache.js';

const ID = 'a'.repeat(64) as ImageId;
const facts = (meta: string): ImageFacts => ({ indexDigest: 'b'.repeat(64), meta });

function cacheOver(answers: Array<ImageFacts | ShifterError>) {
  let now = 0;
  let asked = 0;
  const cache = new FactsCache({
    ttlMs: 60_000,
    log: createLogger('test', 'silent'),
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
