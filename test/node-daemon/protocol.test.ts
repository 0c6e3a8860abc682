/**
 * The launch socket spoken to directly (as root, as a misbehaving client would): replies on
 * the wire, identity refusal for root, garbage handling.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { connect } from 'node:net';
import { statSync } from 'node:fs';
import { encodeRequest } from '../../node-daemon/launch-codec.js';
import { ShifterdFixture } from './runtime-fixture.js';

const fx = new ShifterdFixture();
test.before(async () => {
  await fx.start();
});
test.after.always(async () => {
  await fx.cleanup();
});

function exchange(payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect(fx.socket, () => s.end(payload));
    s.on('data', (d) => chunks.push(d));
    s.on('close', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
  });
}

function errorReply(buf: Buffer): { code: number; message: string } {
  if (buf.toString('latin1', 0, 4) !== 'SHR1' || buf[8] !== 0)
    throw new Error(`not an error reply: ${buf.toString('hex').slice(0, 40)}`);
  return { code: buf.readInt32LE(9), message: buf.subarray(13).toString() };
}

test('sockets: launch socket 0666, admin socket 0600, directory 0755', (t) => {
  t.is(statSync(fx.socket).mode & 0o777, 0o666);
  t.is(statSync(fx.adminSocket).mode & 0o777, 0o600);
  t.is(statSync(`${fx.dir}/run`).mode & 0o777, 0o755);
});

test('--help is an error-kind reply with exit code 0 and the usage text', async (t) => {
  const r = errorReply(await exchange(encodeRequest({ argv: ['shifter', '--help'], env: [], cwd: '/' })));
  t.is(r.code, 0);
  t.regex(r.message, /^Usage: shifter \[options\]/);
  t.true(r.message.endsWith('\n'));
});

test("root callers are refused: identity is the kernel's, not the request's", async (t) => {
  const r = errorReply(
    await exchange(
      encodeRequest({ argv: ['shifter', `--image=${fx.images.bare.name}`, 'id'], env: ['USER=alice'], cwd: '/' }),
    ),
  );
  t.is(r.code, 1);
  t.is(r.message, 'shifter: shifter does not run containers as root (uid or gid 0); run it as a regular user\n');
});

test('garbage closes the connection without a reply; the daemon keeps serving', async (t) => {
  t.is((await exchange(Buffer.from('GET / HTTP/1.0\r\n\r\n'))).length, 0);
  const r = errorReply(await exchange(encodeRequest({ argv: ['shifter', '-h'], env: [], cwd: '/' })));
  t.is(r.code, 0);
});
