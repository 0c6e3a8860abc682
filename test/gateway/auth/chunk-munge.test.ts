/**
 * The node credential with a real munged and the real gateway: a munge credential made by root
 * gets a node token (and a ChunkClient gets past authentication with one), one made by an ordinary
 * user is refused, and a root credential cannot be replayed for a second token.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mungeEncode } from '../../../common/munge.js';
import { ChunkClient } from '../../../common/gateway-client/chunks.js';
import type { ImageId } from '../../../common/image-descriptor.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

let munged: Munged;
let gw: RunningGateway;
let dir: string;

test.before(async () => {
  munged = await startMunged();
  dir = await mkdtemp(join(tmpdir(), 'gw-chunk-munge-'));
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      DefaultImageLocation: '127.0.0.1:9',
      Locations: { '127.0.0.1:9': { url: 'http://127.0.0.1:9' } },
      Platforms: {
        sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') }, mungeSocketPath: munged.socket },
      },
    },
  });
});

test.after.always(async () => {
  await gw?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const session = (authentication: string) =>
  fetch(`${gw.url}/api/chunks/sys/session`, { method: 'POST', headers: { authentication } });

test('a credential made by root gets a node token; the same credential again does not', async (t) => {
  const cred = await mungeEncode('', { socket: munged.socket });
  const res = await session(cred);
  t.is(res.status, 200);
  const body = (await res.json()) as { token: string; expires: number };
  t.true(body.expires > Date.now() / 1000 + 60);
  const replay = await session(cred);
  t.is(replay.status, 401);
  t.regex(((await replay.json()) as { error: string }).error, /replayed/);
});

test('a credential made by an ordinary user is refused with 403', async (t) => {
  const cred = execFileSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'munge', '--socket', munged.socket],
    {
      input: '',
    },
  )
    .toString()
    .trim();
  const res = await session(cred);
  t.is(res.status, 403);
  t.regex(((await res.json()) as { error: string }).error, /may not download image bytes: only root on a compute node/);
});

test('the node client authenticates with fresh root credentials: an unknown image is 404, not 401', async (t) => {
  const client = new ChunkClient({
    gateway: gw.url,
    system: 'sys',
    timeoutMs: 20_000,
    nodeCredential: () => mungeEncode('', { socket: munged.socket }),
  });
  try {
    await t.throwsAsync(client.imageFacts('0'.repeat(64) as ImageId), { code: 'NOT_FOUND', message: /is not on sys/ });
  } finally {
    await client.close();
  }
});
