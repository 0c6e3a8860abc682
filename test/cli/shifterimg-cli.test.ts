/**
 * The real bin/shifterimg against a gateway double on loopback and a real munged: what users see
 * (stdout lines, one-line errors, exit codes) and what the gateway gets (routes, escaping,
 * a decodable munge credential per request, pull ACL bodies).
 */
import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mungeDecode } from '../../common/munge.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { closedPort, startGatewayDouble, type GatewayDouble, type GatewayScript } from './gateway-double.js';
import { runShifterimg, startShifterimg, type RunResult } from './run-shifterimg.js';

const ID = '0123456789abcdef'.repeat(4);
const SYSTEM = 'testsys';
let munged: Munged;
let dir: string;
let confCounter = 0;

test.before(async () => {
  munged = await startMunged();
  dir = await mkdtemp(join(tmpdir(), 'shifterimg-cli-'));
});

test.after.always(async () => {
  await munged?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function record(over: Record<string, unknown>): Record<string, unknown> {
  return {
    id: ID,
    system: SYSTEM,
    itype: 'docker',
    tag: 'ubuntu:latest',
    status: 'READY',
    userACL: [],
    groupACL: [],
    ENV: ['PATH=/usr/bin'],
    ENTRY: 'MISSING',
    WORKDIR: '/',
    LABELS: {},
    last_pull: 1700000000,
    status_message: '',
    ...over,
  };
}

async function writeConf(lines: string[]): Promise<string> {
  const file = join(dir, `udiRoot-${++confCounter}.conf`);
  await writeFile(file, `${lines.join('\n')}\n`);
  return file;
}

async function setup(
  t: { teardown(fn: () => unknown): void },
  script: Partial<GatewayScript>,
  extra: string[] = [],
): Promise<{ gw: GatewayDouble; conf: string }> {
  const gw = await startGatewayDouble({ system: SYSTEM, ...script });
  t.teardown(() => gw.stop());
  const conf = await writeConf([
    '# written by the test',
    `system=${SYSTEM}`,
    `imageGateway=${gw.url}`,
    'gatewayTimeout=10',
    `mungeSocketPath=${munged.socket}`,
    'defaultImageType=docker',
    ...extra,
  ]);
  return { gw, conf };
}

function oneErrorLine(
  t: { is(a: unknown, b: unknown, m?: string): void; false(v: boolean, m?: string): void },
  r: RunResult,
): string {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  t.is(lines.length, 1, `exactly one stderr line, got: ${r.stderr}`);
  t.false(/\bat .*\.js:\d+/.test(r.stderr), 'no stack trace');
  return lines[0] ?? '';
}

test('images: upstream columns, one line per tag sorted by tag; request carries a munge credential of the caller', async (t) => {
  const { gw, conf } = await setup(t, {
    list: [
      record({ tag: ['zeta:1', 'alpha:2'] }),
      record({ id: 'f'.repeat(64), itype: 'custom', tag: 'mid:3', last_pull: 1700003600.7 }),
    ],
  });
  const r = await runShifterimg(['--config', conf, 'images']);
  t.is(r.stderr, '');
  t.is(r.code, 0);
  t.is(
    r.stdout,
    [
      `${SYSTEM}    docker     READY    0123456789   2023-11-14T22:13:20 alpha:2                       `,
      `${SYSTEM}    custom     READY    ffffffffff   2023-11-14T23:13:20 mid:3                         `,
      `${SYSTEM}    docker     READY    0123456789   2023-11-14T22:13:20 zeta:1                        `,
      '',
    ].join('\n'),
  );
  t.is(gw.requests.length, 1);
  const req = gw.requests[0];
  t.is(req.method, 'GET');
  t.is(req.rawUrl, `/api/list/${SYSTEM}/`);
  const cred = req.headers.authentication;
  t.is(typeof cred, 'string');
  const who = await mungeDecode(cred as string, { socket: munged.socket });
  t.is(who.uid, process.getuid!());
  t.is(who.payload, '');
});

test('lookup prints only the id; the tag is escaped per component and gets :latest', async (t) => {
  const { gw, conf } = await setup(t, { lookup: { 'docker:me/app:latest': record({ tag: 'me/app:latest' }) } });
  const r = await runShifterimg(['lookup', 'me/app'], { SHIFTER_UDIROOT_CONF: conf });
  t.is(r.code, 0);
  t.is(r.stdout, `${ID}\n`);
  t.is(r.stderr, '');
  t.is(gw.requests[0]?.rawUrl, `/api/lookup/${SYSTEM}/docker/me/app%3Alatest/`);
});

test('lookup of an unknown image: exit 1, one line saying how to get it', async (t) => {
  const { conf } = await setup(t, {});
  const r = await runShifterimg(['--config', conf, 'lookup', 'docker:nothere:1']);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.is(
    oneErrorLine(t, r),
    `shifterimg: image docker:nothere:1 not found on system '${SYSTEM}' (gateway: image docker:nothere:1 not found): pull it with \`shifterimg pull docker:nothere:1\``,
  );
});

test('lookup refuses an id that is not 64 hex characters (exit 5): the runtime builds paths from it', async (t) => {
  const { conf } = await setup(t, { lookup: { 'docker:evil:latest': record({ id: '../../etc/passwd' }) } });
  const r = await runShifterimg(['--config', conf, 'lookup', 'evil']);
  t.is(r.code, 5);
  t.is(r.stdout, '');
  t.regex(oneErrorLine(t, r), /invalid image id for docker:evil:latest/);
});

test('pull: re-POSTs until READY, one line per status change, ACL body from -u/-g, fresh credential each time', async (t) => {
  const name = 'me/app:1.0';
  const { gw, conf } = await setup(t, {
    pull: {
      [`docker:${name}`]: [
        record({ id: 'MISSING', tag: name, status: 'PENDING', status_message: 'Queued for pulling' }),
        record({
          id: 'MISSING',
          tag: name,
          status: 'PULLING',
          status_message: 'fetching layers',
          progress: { layersDone: 1, layersTotal: 2, bytesDone: 1024, bytesTotal: 4096 },
        }),
        record({
          id: 'MISSING',
          tag: name,
          status: 'PULLING',
          status_message: 'fetching layers',
          progress: { layersDone: 2, layersTotal: 2, bytesDone: 4096, bytesTotal: 4096 },
        }),
        record({ id: 'MISSING', tag: name, status: 'CONVERSION', status_message: 'making squashfs' }),
        record({ tag: name, status: 'READY', status_message: 'Image ready' }),
      ],
    },
  });
  const r = await runShifterimg([
    '--config',
    conf,
    '-u',
    'root,1234',
    '--group',
    'root',
    '-u',
    '1234',
    'pull',
    `docker:${name}`,
  ]);
  t.is(r.stderr, '');
  t.is(r.code, 0);
  const lines = r.stdout.trimEnd().split('\n');
  const re = (rest: string) =>
    new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d Pulling Image: docker:me/app:1\\.0, status: ${rest}$`);
  t.is(lines.length, 4, r.stdout);
  t.regex(lines[0], re('PENDING Queued for pulling'));
  t.regex(lines[1], re('PULLING fetching layers \\(layers 1/2, 1\\.0 KiB of 4\\.0 KiB\\)'));
  t.regex(lines[2], re('CONVERSION making squashfs'));
  t.regex(lines[3], re('READY Image ready'));
  t.is(gw.requests.length, 5);
  const creds = new Set<string>();
  for (const req of gw.requests) {
    t.is(req.method, 'POST');
    t.is(req.rawUrl, `/api/pull/${SYSTEM}/docker/me/app%3A1.0/?progress=1`);
    t.is(req.headers['content-type'], 'application/json');
    t.deepEqual(JSON.parse(req.body), { allowed_uids: '0,1234', allowed_gids: '0' });
    creds.add(req.headers.authentication as string);
  }
  t.is(creds.size, 5, 'munge refuses replays, so every request needs its own credential');
  for (const c of creds) t.is((await mungeDecode(c, { socket: munged.socket })).uid, process.getuid!());
});

test('pull that ends in FAILURE exits 1 and says why (upstream exited 0)', async (t) => {
  const { conf } = await setup(t, {
    pull: {
      'docker:broken:latest': [
        record({ id: 'MISSING', tag: 'broken:latest', status: 'PULLING', status_message: '' }),
        record({
          id: 'MISSING',
          tag: 'broken:latest',
          status: 'FAILURE',
          status_message: 'manifest unknown: broken:latest',
        }),
      ],
    },
  });
  const r = await runShifterimg(['--config', conf, 'pull', 'broken']);
  t.is(r.code, 1);
  const lines = r.stdout.trimEnd().split('\n');
  t.is(lines.length, 2);
  t.regex(lines[1], /Pulling Image: docker:broken:latest, status: FAILURE manifest unknown: broken:latest$/);
  t.is(oneErrorLine(t, r), 'shifterimg: pull of docker:broken:latest failed: manifest unknown: broken:latest');
});

test('pullnb asks once and reports the status; pull of something the gateway refuses exits 1', async (t) => {
  const { gw, conf } = await setup(t, {
    pull: {
      'docker:slow:latest': [
        record({ id: 'MISSING', tag: 'slow:latest', status: 'PULLING', status_message: 'working' }),
      ],
    },
  });
  const r = await runShifterimg(['--config', conf, 'pullnb', 'slow']);
  t.is(r.code, 0);
  t.regex(r.stdout, /^\S+ Pulling Image: docker:slow:latest, status: PULLING working\n$/);
  t.is(gw.requests.length, 1);
  t.deepEqual(JSON.parse(gw.requests[0].body), {});

  const refused = await runShifterimg(['--config', conf, 'pull', 'custom:nope']);
  t.is(refused.code, 1);
  t.is(oneErrorLine(t, refused), 'shifterimg: the image gateway cannot pull custom:nope: cannot pull custom:nope');
});

test('Ctrl-C during a pull exits 130 and says the pull goes on at the gateway', async (t) => {
  const { gw, conf } = await setup(t, {
    pull: {
      'docker:forever:latest': [
        record({ id: 'MISSING', tag: 'forever:latest', status: 'PULLING', status_message: 'slow' }),
      ],
    },
  });
  const { child, done } = startShifterimg(['--config', conf, 'pull', 'forever']);
  // Generous: with the other tests of this file starting shifterimg at once, a loaded machine
  // can take many seconds to start one; the wait ends as soon as the second poll arrives.
  const deadline = Date.now() + 60_000;
  while (gw.requests.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.true(gw.requests.length >= 2, 'it polls');
  child.kill('SIGINT');
  const r = await done;
  t.is(r.code, 130);
  t.regex(r.stdout, /status: PULLING slow\n$/);
  t.is(
    oneErrorLine(t, r),
    'shifterimg: interrupted; the gateway goes on pulling docker:forever:latest: run `shifterimg pull docker:forever:latest` to follow it again',
  );
});

test('on a terminal the pull line is rewritten in place', async (t) => {
  const { conf } = await setup(t, {
    pull: {
      'docker:tty:latest': [
        record({ id: 'MISSING', tag: 'tty:latest', status: 'PULLING', status_message: 'a' }),
        record({ tag: 'tty:latest', status: 'READY', status_message: 'done' }),
      ],
    },
  });
  // `script` gives the child a pseudo-terminal, as a user's shell would.
  const { SHIFTERIMG } = await import('./run-shifterimg.js');
  const { execFile } = await import('node:child_process');
  const out = await new Promise<string>((resolve, reject) => {
    execFile(
      'script',
      ['-qec', `${SHIFTERIMG} --config ${conf} pull tty`, '/dev/null'],
      { env: { PATH: process.env.PATH ?? '', TZ: 'UTC', TERM: 'xterm' } },
      (err, stdout) => (err ? reject(err) : resolve(stdout)),
    );
  });
  t.regex(
    out,
    /\r\x1b\[2K\S+ Pulling Image: docker:tty:latest, status: PULLING a\r\x1b\[2K\S+ Pulling Image: docker:tty:latest, status: READY done\r?\n$/,
  );
});

test('queue lists the pulls in progress', async (t) => {
  const { gw, conf } = await setup(t, {
    queue: [
      { status: 'PULLING', image: 'docker:a:1' },
      { status: 'PENDING', image: 'docker:b:2' },
    ],
  });
  const r = await runShifterimg(['--config', conf, 'queue']);
  t.is(r.code, 0);
  t.is(r.stdout, 'PULLING     docker:a:1\nPENDING     docker:b:2\n');
  t.is(gw.requests[0]?.rawUrl, `/api/queue/${SYSTEM}/`);
});

test('-v prints the raw JSON answers (scripts grep "status":)', async (t) => {
  const { conf } = await setup(t, { lookup: { 'docker:ubuntu:latest': record({}) } });
  const r = await runShifterimg(['-v', '--config', conf, 'lookup', 'ubuntu']);
  t.is(r.code, 0);
  const [json, id] = r.stdout.trimEnd().split('\n');
  t.regex(json, /"status":"READY"/);
  t.is((JSON.parse(json) as { id: unknown }).id, ID);
  t.is(id, ID);
  t.regex(
    r.stderr,
    /^shifterimg: GET http:\/\/127\.0\.0\.1:\d+\/api\/lookup\/testsys\/docker\/ubuntu%3Alatest\/ -> HTTP 200\n$/,
  );
});

test('unreachable gateway: exit 3, one line naming the address and the reason', async (t) => {
  const port = await closedPort();
  const conf = await writeConf([
    `system=${SYSTEM}`,
    `imageGateway=http://127.0.0.1:${port}`,
    `mungeSocketPath=${munged.socket}`,
  ]);
  const r = await runShifterimg(['--config', conf, 'images']);
  t.is(r.code, 3);
  t.is(r.stdout, '');
  t.is(
    oneErrorLine(t, r),
    `shifterimg: cannot reach the image gateway (http://127.0.0.1:${port}: connection refused): check that it is running and that imageGateway in udiRoot.conf is right`,
  );
});

test('a dead gateway in the list is skipped for a live one', async (t) => {
  const port = await closedPort();
  const { gw } = await setup(t, { lookup: { 'docker:ubuntu:latest': record({}) } });
  const conf = await writeConf([
    `system=${SYSTEM}`,
    `imageGateway=http://127.0.0.1:${port} ${gw.url}`,
    `mungeSocketPath=${munged.socket}`,
  ]);
  for (let i = 0; i < 3; i++) {
    const r = await runShifterimg(['--config', conf, 'lookup', 'ubuntu']);
    t.is(r.code, 0);
    t.is(r.stdout, `${ID}\n`);
  }
});

test('gateway errors: 5xx everywhere exits 5, a refused credential exits 4', async (t) => {
  const { gw, conf } = await setup(t, { override: { status: 500, body: { error: 'database is down' } } });
  const r = await runShifterimg(['--config', conf, 'images']);
  t.is(r.code, 5);
  t.is(oneErrorLine(t, r), `shifterimg: the image gateway at ${gw.url} failed (HTTP 500): database is down`);

  gw.script.override = { status: 401, body: { error: 'Replayed Credential' } };
  const auth = await runShifterimg(['--config', conf, 'images']);
  t.is(auth.code, 4);
  t.is(oneErrorLine(t, auth), 'shifterimg: the image gateway refused the request: Replayed Credential');
});

test('unknown system: exit 5 pointing at system= in the config file', async (t) => {
  const gw = await startGatewayDouble({ system: 'other' });
  t.teardown(() => gw.stop());
  const conf = await writeConf([`system=${SYSTEM}`, `imageGateway=${gw.url}`, `mungeSocketPath=${munged.socket}`]);
  const r = await runShifterimg(['--config', conf, 'images']);
  t.is(r.code, 5);
  t.is(
    oneErrorLine(t, r),
    `shifterimg: the image gateway does not serve system '${SYSTEM}' (gateway: Bad session or system): check system= in ${conf}`,
  );
});

test('no munged at mungeSocketPath: exit 4, one line', async (t) => {
  const { gw } = await setup(t, {});
  const conf = await writeConf([
    `system=${SYSTEM}`,
    `imageGateway=${gw.url}`,
    `mungeSocketPath=${join(dir, 'no-such.socket')}`,
  ]);
  const r = await runShifterimg(['--config', conf, 'images']);
  t.is(r.code, 4);
  t.regex(oneErrorLine(t, r), /^shifterimg: munge could not encode a credential: .*no-such\.socket/);
  t.is(gw.requests.length, 0);
});

test('bad config: missing keys, bad values, missing file and bad URLs exit 2 with one line; unknown keys only warn', async (t) => {
  const missing = await writeConf([`mungeSocketPath=${munged.socket}`]);
  const r1 = await runShifterimg(['--config', missing, 'images']);
  t.is(r1.code, 2);
  t.is(
    oneErrorLine(t, r1),
    `shifterimg: ${missing}: keys system, imageGateway are missing: add e.g. system=mycluster, imageGateway=http://imagegw:5000`,
  );

  const badValue = await writeConf([`system=${SYSTEM}`, 'imageGateway=http://127.0.0.1:1', 'gatewayTimeout=forever']);
  const r2 = await runShifterimg(['--config', badValue, 'images']);
  t.is(r2.code, 2);
  t.is(
    oneErrorLine(t, r2),
    `shifterimg: ${badValue}:3: gatewayTimeout=forever is not valid: expected a number of seconds, e.g. 30`,
  );

  const r3 = await runShifterimg(['images'], { SHIFTER_UDIROOT_CONF: join(dir, 'absent.conf') });
  t.is(r3.code, 2);
  t.is(
    oneErrorLine(t, r3),
    `shifterimg: cannot read udiRoot.conf at ${join(dir, 'absent.conf')} (no such file): pass --config <file> or set SHIFTER_UDIROOT_CONF`,
  );

  const badUrl = await writeConf([`system=${SYSTEM}`, 'imageGateway=imagegw:5000']);
  const r4 = await runShifterimg(['--config', badUrl, 'images']);
  t.is(r4.code, 2);
  t.is(
    oneErrorLine(t, r4),
    `shifterimg: imageGateway entry 'imagegw:5000' in ${badUrl} is not an http(s) URL: write e.g. imageGateway=http://imagegw:5000`,
  );

  const { conf } = await setup(t, { list: [] }, ['someFutureKey=1']);
  const r5 = await runShifterimg(['--config', conf, 'images']);
  t.is(r5.code, 0);
  t.is(
    r5.stderr,
    `shifterimg: warning: ${conf}:7: unknown key 'someFutureKey' was ignored (check the spelling; keys are case-sensitive)\n`,
  );
});

test('bad arguments exit 2 with one line and never reach the gateway', async (t) => {
  const { gw, conf } = await setup(t, {});
  const cases: [string[], RegExp][] = [
    [['lookup', 'ubuntu;rm'], /^shifterimg: image 'ubuntu;rm' contains ';', which is not allowed/],
    [['lookup'], /^shifterimg: missing required argument 'image'$/],
    [['frobnicate'], /^shifterimg: unknown command 'frobnicate'$/],
    [['-u', 'no_such_user_xyz', 'pull', 'ubuntu'], /^shifterimg: unknown user 'no_such_user_xyz' in --user/],
    [['pull', 'id:123'], /^shifterimg: 'id:123' is not a valid image id/],
  ];
  for (const [args, re] of cases) {
    const r = await runShifterimg(['--config', conf, ...args]);
    t.is(r.code, 2, args.join(' '));
    t.regex(oneErrorLine(t, r), re);
  }
  t.is(gw.requests.length, 0);
});

test('--help documents the commands and the exit codes', async (t) => {
  const r = await runShifterimg(['--help']);
  t.is(r.code, 0);
  for (const s of [
    'images',
    'lookup <image>',
    'pull <image>',
    'pullnb <image>',
    'queue',
    '--config <file>',
    'Exit codes:',
    '3    the image gateway could not be reached',
  ]) {
    t.true(r.stdout.includes(s), s);
  }
});
