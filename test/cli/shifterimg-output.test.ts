import test from 'ava';
import { parseImageDescriptor } from '../../common/image-descriptor.js';
import { sanitizeForTerminal } from '../../common/gateway-client/answer.js';
import { parseImageList, parseImageRecord, parseQueue } from '../../cli/shifterimg/gateway-record.js';
import { resolveIds, splitIdLists, type IdLookup } from '../../cli/shifterimg/identity-lists.js';
import { formatImagesTable } from '../../cli/shifterimg/images-table.js';
import { PullDisplay, formatBytes, formatLocalTime, pullStatusLine } from '../../cli/shifterimg/pull-progress.js';
import { type ShifterError } from '../../common/errors.js';

const ID = '0123456789abcdef'.repeat(4);

function record(over: Record<string, unknown>): Record<string, unknown> {
  return {
    id: ID,
    system: 'cori',
    itype: 'docker',
    tag: 'ubuntu:latest',
    status: 'READY',
    userACL: [],
    groupACL: [],
    ENV: [],
    ENTRY: 'MISSING',
    WORKDIR: '/',
    LABELS: {},
    last_pull: 1700000000.5,
    status_message: '',
    ...over,
  };
}

test('images table: upstream columns, one line per tag, sorted by tag (local time)', (t) => {
  const records = parseImageList({
    list: [
      record({ tag: ['zeta:1', 'alpha:2'], last_pull: 1700000000.25 }),
      record({
        id: 'f'.repeat(64),
        tag: 'mid:3',
        status: 'READY',
        last_pull: 'MISSING',
        system: 'averyverylongsystem',
      }),
    ],
  });
  const when = formatLocalTime(new Date(1700000000250));
  t.deepEqual(formatImagesTable(records), [
    `cori       docker     READY    0123456789   ${when} alpha:2                       `,
    `averyverylongsystem docker     READY    ffffffffff   -                   mid:3                         `,
    `cori       docker     READY    0123456789   ${when} zeta:1                        `,
  ]);
});

test('local time format is %Y-%m-%dT%H:%M:%S', (t) => {
  t.regex(formatLocalTime(new Date()), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$/);
  const d = new Date(2024, 0, 2, 3, 4, 5);
  t.is(formatLocalTime(d), '2024-01-02T03:04:05');
});

test('records: "MISSING" becomes empty, tag string or list, ISO or epoch last_pull, progress read', (t) => {
  const r = parseImageRecord(
    record({
      id: 'MISSING',
      tag: 'a:1',
      status: 'PULLING',
      last_pull: '2024-05-01T00:00:00Z',
      progress: { layersDone: 1, layersTotal: 3, bytesDone: 1536, bytesTotal: 10485760 },
    }),
    'x',
  );
  t.is(r.id, '');
  t.deepEqual(r.tags, ['a:1']);
  t.is(r.lastPull?.toISOString(), '2024-05-01T00:00:00.000Z');
  t.deepEqual(r.progress, { layersDone: 1, layersTotal: 3, bytesDone: 1536, bytesTotal: 10485760 });
  const snake = parseImageRecord(record({ progress: { layers_done: 2, bytes_done: 5 } }), 'x');
  t.deepEqual(snake.progress, { layersDone: 2, bytesDone: 5 });
});

test('records: control characters from the gateway never reach the terminal', (t) => {
  const r = parseImageRecord(record({ status: 'FAILURE', status_message: 'bad\u001b[2Jthing\r\nx' }), 'x');
  t.false(/[\u0000-\u001f]/.test(r.statusMessage));
  t.is(sanitizeForTerminal('a\u009bb'), 'a b');
});

test('records: malformed answers are GatewayAnswerErrors (exit 5), not crashes', (t) => {
  for (const bad of [null, [], 'x', { list: 'no' }]) {
    const e = t.throws(() => parseImageList(bad));
    t.is((e as ShifterError).code, 'REGISTRY_ERROR');
  }
  t.throws(() => parseImageRecord({ id: 'x' }, 'the lookup'), { message: /has no status/ });
  t.deepEqual(parseQueue({ list: [{ status: 'PULLING', image: 'docker:a:1' }, {}] }), [
    { status: 'PULLING', image: 'docker:a:1' },
    { status: '?', image: '?' },
  ]);
});

test('pull line: time, image, status, message and progress', (t) => {
  const img = parseImageDescriptor('docker:me/app:1.0');
  const now = new Date(2024, 0, 2, 3, 4, 5);
  const pulling = parseImageRecord(
    record({
      status: 'PULLING',
      status_message: 'fetching layers',
      progress: { layersDone: 1, layersTotal: 3, bytesDone: 1536, bytesTotal: 10485760 },
    }),
    'x',
  );
  t.is(
    pullStatusLine(now, img, pulling),
    '2024-01-02T03:04:05 Pulling Image: docker:me/app:1.0, status: PULLING fetching layers (layers 1/3, 1.5 KiB of 10.0 MiB)',
  );
  t.is(
    pullStatusLine(now, img, parseImageRecord(record({ status: 'READY' }), 'x')),
    '2024-01-02T03:04:05 Pulling Image: docker:me/app:1.0, status: READY',
  );
  t.is(formatBytes(512), '512 B');
});

test('pull display: in place on a terminal, one line per status change elsewhere', (t) => {
  const recs = ['PENDING', 'PULLING', 'PULLING', 'READY'].map((status) => parseImageRecord(record({ status }), 'x'));
  let tty = '';
  const onTty = new PullDisplay(
    {
      write: (s: string) => {
        tty += s;
      },
    },
    true,
  );
  recs.forEach((r, i) => onTty.show(`line${i} ${r.status}`, r));
  onTty.finish();
  t.is(tty, '\r\x1b[2Kline0 PENDING\r\x1b[2Kline1 PULLING\r\x1b[2Kline2 PULLING\r\x1b[2Kline3 READY\n');

  let plain = '';
  const inLog = new PullDisplay(
    {
      write: (s: string) => {
        plain += s;
      },
    },
    false,
  );
  recs.forEach((r, i) => inLog.show(`line${i} ${r.status}`, r));
  inLog.finish();
  t.is(plain, 'line0 PENDING\nline1 PULLING\nline3 READY\n');
});

test('-u/-g lists: names and numbers, repeatable, de-duplicated; unknown names and empty entries refused', async (t) => {
  const lookup: IdLookup = async (_kind, name) => (({ alice: 1001, bob: 1002 }) as Record<string, number>)[name];
  t.deepEqual(splitIdLists(['alice,1003', 'bob'], 'user'), ['alice', '1003', 'bob']);
  t.deepEqual(await resolveIds(['alice', '1003', 'bob', '1001'], 'user', lookup), [1001, 1003, 1002]);
  const unknown = await t.throwsAsync(resolveIds(['carol'], 'user', lookup));
  t.is(unknown?.message, "unknown user 'carol' in --user: give an existing user name or a numeric id");
  t.throws(() => splitIdLists(['a,,b'], 'group'), { message: /empty entry in the group list 'a,,b'/ });
  await t.throwsAsync(resolveIds(['99999999999'], 'group', lookup), { message: /out of range/ });
});
