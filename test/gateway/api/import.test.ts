/**
 * doimport through the real routes (fastify inject) with real squashfs files made by mksquashfs:
 * who may import (admins, ImportUsers by name or uid), which files are refused and why, the id
 * (upstream's fast hash), the files and metadata it leaves in imageDir, and that a file sharing the
 * fast hash of a different image cannot replace it.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ALICE, BOB, ROOT, startApi, type Answer, type ApiUnderTest } from './api-under-test.js';

const CAROL = { authentication: 'good:carol:users::1002:102' };
let api: ApiUnderTest;
let dir: string;

/** A squashfs image of `files`, world-readable, in the test's directory. */
async function squashfs(name: string, files: Record<string, string | Buffer>): Promise<string> {
  const src = join(dir, `${name}.d`);
  await mkdir(src, { recursive: true });
  for (const [f, content] of Object.entries(files)) await writeFile(join(src, f), content);
  const out = join(dir, `${name}.squashfs`);
  execFileSync('mksquashfs', [src, out, '-noappend', '-quiet', '-no-progress', '-all-root'], { stdio: 'ignore' });
  await chmod(out, 0o644);
  return out;
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-import-'));
  await chmod(dir, 0o755);
  api = await startApi({ ImportUsers: ['alice', 1001], Limits: { MaxImageBytes: '16M' } });
});

test.after.always(async () => {
  await api?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const doimport = (tag: string, body: object, who: Record<string, string> = ROOT) =>
  api.call('POST', `/api/doimport/sys/custom/${tag}/`, who, JSON.stringify(body));

async function untilSettled(tag: string): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const rec = await api.store.findPullByTag('sys', 'custom', tag);
    const ready = await api.store.findReadyByTag('sys', 'custom', tag);
    if (ready) return ready as unknown as Record<string, unknown>;
    if (rec?.status === 'FAILURE') return rec as unknown as Record<string, unknown>;
    if (Date.now() > deadline) throw new Error(`import of ${tag} did not settle: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function refusedWith(t: import('ava').ExecutionContext, r: Answer, status: number, re: RegExp) {
  t.is(r.status, status, r.text);
  t.regex(String(r.json.error), re);
}

test.serial(
  'an admin imports a squashfs: id = fast hash, file copied 0600, metadata in the record and .meta',
  async (t) => {
    const file = await squashfs('tools', { 'hello.txt': 'hello\n' });
    const r = await doimport('tools:1', {
      filepath: file,
      format: 'squashfs',
      ENV: ['PATH=/opt/tools/bin:/bin'],
      ENTRY: ['/opt/tools/bin/run'],
      WORKDIR: '/work',
    });
    t.is(r.status, 200, r.text);
    t.is(r.json.status, 'HASHING');
    t.deepEqual(r.json.tag, []);
    const rec = await untilSettled('tools:1');
    t.is(rec.status, 'READY', String(rec.status_message));
    const bytes = await readFile(file);
    const id = createHash('sha256').update(bytes).digest('hex');
    t.is(rec.id, id, "under 1 MiB upstream's fast hash is the file's sha256");
    const imageDir = api.config.platforms.sys.imageDir;
    t.deepEqual(await readFile(join(imageDir, `${id}.squashfs`)), bytes);
    t.is((await stat(join(imageDir, `${id}.squashfs`))).mode & 0o777, 0o600);
    const meta = await readFile(join(imageDir, `${id}.meta`), 'utf8');
    t.regex(meta, /^FORMAT: squashfs\n/);
    t.regex(meta, /\nENTRY: \['\/opt\/tools\/bin\/run'\]\n/);
    t.regex(meta, /\nWORKDIR: \/work\n/);
    t.regex(meta, /\nENV: PATH=\/opt\/tools\/bin:\/bin\n/);
    const lookup = await api.call('GET', '/api/lookup/sys/custom/tools:1/', ALICE);
    t.is(lookup.status, 200);
    t.is(lookup.json.id, id);
    t.deepEqual(lookup.json.ENV, ['PATH=/opt/tools/bin:/bin']);
  },
);

test.serial('LABELS are "MISSING" in records unless the gateway runs with ENABLE_LABELS, as upstream', async (t) => {
  const file = await squashfs('labels', { l: 'l\n' });
  const body = { filepath: file, format: 'squashfs', LABELS: { 'org.example.team': 'hpc' } };
  t.is((await doimport('labels:1', body)).status, 200);
  t.is((await untilSettled('labels:1')).status, 'READY');
  const saved = process.env.ENABLE_LABELS;
  t.teardown(() => {
    if (saved === undefined) delete process.env.ENABLE_LABELS;
    else process.env.ENABLE_LABELS = saved;
  });
  delete process.env.ENABLE_LABELS;
  t.is((await api.call('GET', '/api/lookup/sys/custom/labels:1/', ALICE)).json.LABELS, 'MISSING');
  process.env.ENABLE_LABELS = '';
  t.deepEqual((await api.call('GET', '/api/lookup/sys/custom/labels:1/', ALICE)).json.LABELS, {
    'org.example.team': 'hpc',
  });
});

test.serial('a custom tag without a version is imported as :latest, as lookups name it', async (t) => {
  const file = await squashfs('plain', { a: 'a\n' });
  t.is((await doimport('plain', { filepath: file, format: 'squashfs' })).status, 200);
  t.is((await untilSettled('plain:latest')).status, 'READY');
  t.is((await api.call('GET', '/api/lookup/sys/custom/plain/', ALICE)).status, 200);
});

test.serial('ImportUsers admits users by name and by uid; others get 403 saying whom to ask', async (t) => {
  const file = await squashfs('users', { u: 'u\n' });
  t.is((await doimport('byname:1', { filepath: file, format: 'squashfs' }, ALICE)).status, 200);
  t.is((await doimport('byuid:1', { filepath: file, format: 'squashfs' }, BOB)).status, 200);
  refusedWith(
    t,
    await doimport('carol:1', { filepath: file, format: 'squashfs' }, CAROL),
    403,
    /carol \(uid 1002\) is not in the gateway's ImportUsers; ask an admin/,
  );
  refusedWith(t, await doimport('anon:1', { filepath: file, format: 'squashfs' }, {}), 401, /needs an authenticated/);
  t.is((await untilSettled('byname:1')).status, 'READY');
  t.is((await untilSettled('byuid:1')).status, 'READY');
});

test.serial('a private import is visible to the listed users only', async (t) => {
  const file = await squashfs('private', { p: 'p\n' });
  t.is((await doimport('private:1', { filepath: file, format: 'squashfs', allowed_uids: '1001' }, ALICE)).status, 200);
  t.is((await untilSettled('private:1')).status, 'READY');
  t.is((await api.call('GET', '/api/lookup/sys/custom/private:1/', ALICE)).status, 200);
  t.is((await api.call('GET', '/api/lookup/sys/custom/private:1/', BOB)).status, 200);
  t.is((await api.call('GET', '/api/lookup/sys/custom/private:1/', CAROL)).status, 404);
});

test.serial(
  'files that are not a readable, regular squashfs within the limits are refused, one line each',
  async (t) => {
    const good = await squashfs('refusals', { r: 'r\n' });
    const secret = join(dir, 'secret.squashfs');
    await writeFile(secret, await readFile(good));
    await chmod(secret, 0o600);
    const link = join(dir, 'link.squashfs');
    await symlink(good, link);
    const text = join(dir, 'text.squashfs');
    await writeFile(text, 'not an image at all, just text, but longer than a superblock '.repeat(4));
    await chmod(text, 0o644);
    const truncated = join(dir, 'truncated.squashfs');
    await writeFile(truncated, (await readFile(good)).subarray(0, 200));
    await chmod(truncated, 0o644);
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const big = await squashfs('big', { noise: randomBytes(17 * 1024 * 1024) });
    const body = (filepath: string) => ({ filepath, format: 'squashfs' });
    const cases: [string, Record<string, string>, object, number, RegExp][] = [
      [
        'unreadable by the caller',
        ALICE,
        body(secret),
        403,
        /alice cannot read .*secret\.squashfs: import only a file you can read/,
      ],
      ['a symlink', ROOT, body(link), 400, /link\.squashfs is a symbolic link; name the image file itself/],
      [
        'not squashfs',
        ROOT,
        body(text),
        400,
        /is not a usable squashfs image: it does not start with the squashfs magic/,
      ],
      ['truncated', ROOT, body(truncated), 400, /superblock says \d+ bytes are used but the file has 200/],
      ['a FIFO', ROOT, body(fifo), 400, /fifo is not a regular file; name a squashfs image/],
      ['missing', ROOT, body(join(dir, 'none')), 404, /cannot import .*none: ENOENT on the gateway host/],
      ['relative', ROOT, body('images/x.squashfs'), 400, /filepath "images\/x\.squashfs" is not absolute/],
      ['over MaxImageBytes', ROOT, body(big), 400, /over the gateway's Limits\.MaxImageBytes \(16777216\)/],
      ['no format', ROOT, { filepath: good }, 400, /the request body field format/],
    ];
    for (const [what, who, b, status, re] of cases) {
      const r = await doimport('refused:1', b, who);
      t.is(r.status, status, `${what}: ${r.text}`);
      t.regex(String(r.json.error), re, what);
      t.notRegex(r.text, /\n|\bat [\w.]+ \(/, `${what}: one line, no stack`);
    }
    refusedWith(t, await doimport('refused:1', body(good), CAROL), 403, /not in the gateway's ImportUsers/);
  },
);

test.serial(
  'a file with the fast hash of a different image already there fails and leaves that image alone',
  async (t) => {
    const first = await squashfs('collide', { noise: randomBytes(3 * 1024 * 1024) });
    const bytes = await readFile(first);
    t.true(bytes.length > 2 * 1024 * 1024, 'the image is past the 1 MiB the fast hash reads');
    const forged = join(dir, 'forged.squashfs');
    const changed = Buffer.from(bytes);
    changed[1024 * 1024 + 10] ^= 0xff;
    await writeFile(forged, changed);
    await chmod(forged, 0o644);
    t.is((await doimport('orig:1', { filepath: first, format: 'squashfs' })).status, 200);
    const orig = await untilSettled('orig:1');
    t.is(orig.status, 'READY');
    t.is((await doimport('forged:1', { filepath: forged, format: 'squashfs' })).status, 200);
    const forgedRec = await untilSettled('forged:1');
    t.is(forgedRec.status, 'FAILURE');
    t.regex(
      String(forgedRec.status_message),
      /has the id \w{12} \(upstream's fast hash\) of a different image already on sys/,
    );
    const imageDir = api.config.platforms.sys.imageDir;
    t.deepEqual(await readFile(join(imageDir, `${String(orig.id)}.squashfs`)), bytes);
  },
);
