/** Munge authentication with a real munged: the CLI wrapper and the gateway's header handling. */
import test from 'ava';
import { rootTest } from '../../helpers/privileges.js';
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mungeDecode, mungeEncode } from '../../../common/munge.js';
import { startMunged, type Munged } from '../../helpers/munge.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

let munged: Munged;
let gw: RunningGateway;
let dir: string;

test.before(async () => {
  munged = await startMunged();
  dir = await mkdtemp(join(tmpdir(), 'gw-munge-'));
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      DefaultImageLocation: '127.0.0.1:9',
      Locations: { '127.0.0.1:9': { url: 'http://127.0.0.1:9' } },
      Platforms: {
        sys: {
          accesstype: 'local',
          local: { imageDir: join(dir, 'images') },
          mungeSocketPath: munged.socket,
          admins: ['root'],
        },
        nomunge: {
          accesstype: 'local',
          local: { imageDir: join(dir, 'images2') },
          mungeSocketPath: join(dir, 'absent.socket'),
        },
      },
    },
  });
});

test.after.always(async () => {
  await gw?.stop();
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A credential made by the unprivileged user `nobody` (65534). */
function mungeAsNobody(payload: string): string {
  return execFileSync(
    'setpriv',
    ['--reuid=65534', '--regid=65534', '--clear-groups', 'munge', '--socket', munged.socket],
    { input: payload },
  )
    .toString()
    .trim();
}

rootTest('mungeDecode returns the encoding uid/gid and the payload', async (t) => {
  const cred = mungeAsNobody('{"authorized_locations": {"default": "u:p"}}');
  const id = await mungeDecode(cred, { socket: munged.socket });
  t.is(id.uid, 65534);
  t.is(id.gid, 65534);
  t.is(id.payload, '{"authorized_locations": {"default": "u:p"}}');
});

test('mungeDecode: replayed, expired and garbage credentials are distinct errors', async (t) => {
  const cred = await mungeEncode('', { socket: munged.socket });
  await mungeDecode(cred, { socket: munged.socket });
  await t.throwsAsync(mungeDecode(cred, { socket: munged.socket }), { message: /already used \(replayed\)/ });
  const short = await mungeEncode('', { socket: munged.socket, ttlSeconds: 1 });
  await new Promise((r) => setTimeout(r, 2200));
  await t.throwsAsync(mungeDecode(short, { socket: munged.socket }), {
    message: /credential expired; create a fresh one/,
  });
  await t.throwsAsync(mungeDecode('garbage', { socket: munged.socket }), { message: /munge credential is not valid/ });
  await t.throwsAsync(mungeEncode('', { socket: join(dir, 'nope.socket') }), { message: /is munged running on/ });
});

async function pull(system: string, tag: string, headers: Record<string, string>, body?: object) {
  const res = await fetch(`${gw.url}/api/pull/${system}/docker/${tag}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body ?? {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

rootTest('a good credential identifies the caller: their uid joins the ACL they asked for', async (t) => {
  const r = await pull(
    'sys',
    'team/acl',
    { authentication: mungeAsNobody('') },
    { allowed_uids: '5', allowed_gids: '7' },
  );
  t.is(r.status, 200);
  t.deepEqual(r.body.userACL, [5, 65534]);
  t.deepEqual(r.body.groupACL, [7, 65534]);
  t.is(r.body.status, 'PENDING');
});

test('no header is an anonymous session: public pulls work, ACLs need a credential', async (t) => {
  const ok = await pull('sys', 'team/anon', {});
  t.is(ok.status, 200);
  const denied = await pull('sys', 'team/anon2', {}, { allowed_uids: '5' });
  t.is(denied.status, 401);
  t.regex(String(denied.body.error), /needs an authenticated request/);
});

rootTest('replayed, expired and garbage credentials get 401 with a clear message', async (t) => {
  const cred = mungeAsNobody('');
  t.is((await pull('sys', 'team/r1', { authentication: cred })).status, 200);
  const replay = await pull('sys', 'team/r1', { authentication: cred });
  t.deepEqual(replay, {
    status: 401,
    body: {
      status: 401,
      error: 'munge credential was already used (replayed); every request needs a fresh credential',
      message: 'Unauthorized: /api/pull/sys/docker/team/r1/',
    },
  });
  const short = execFileSync('munge', ['--socket', munged.socket, '--ttl', '1'], { input: '' }).toString().trim();
  await new Promise((r) => setTimeout(r, 2200));
  const expired = await pull('sys', 'team/r2', { authentication: short });
  t.is(expired.status, 401);
  t.regex(String(expired.body.error), /credential expired/);
  const garbage = await fetch(`${gw.url}/api/list/sys/`, { headers: { authentication: 'MUNGE:garbage:' } });
  t.is(garbage.status, 401);
  t.regex(String(((await garbage.json()) as { error: string }).error), /not valid/);
});

rootTest('a platform whose munged is not running answers 503 naming the socket setting', async (t) => {
  const res = await fetch(`${gw.url}/api/list/nomunge/`, { headers: { authentication: mungeAsNobody('') } });
  t.is(res.status, 503);
  t.regex(((await res.json()) as { error: string }).error, /mungeSocketPath/);
});
