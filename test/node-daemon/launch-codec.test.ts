import test from 'ava';
import {
  decodeRequest,
  encodeRequest,
  encodeErrorReply,
  encodeExecReply,
  requestLength,
  ProtocolError,
  MAX_BODY,
} from '../../node-daemon/launch-codec.js';

test('request round trip', (t) => {
  const req = { argv: ['shifter', '--image=x', 'ls'], env: ['A=1', 'PATH=/bin'], cwd: '/home/u' };
  const buf = encodeRequest(req);
  t.is(requestLength(buf), buf.length);
  t.deepEqual(decodeRequest(buf), req);
  t.is(requestLength(buf.subarray(0, 5)), undefined);
});

test('malformed requests are rejected', (t) => {
  const good = encodeRequest({ argv: ['a'], env: [], cwd: '/' });
  const badMagic = Buffer.from(good);
  badMagic.write('XXXX', 0, 'latin1');
  t.throws(() => requestLength(badMagic), { instanceOf: ProtocolError });
  const huge = Buffer.from(good);
  huge.writeUInt32LE(MAX_BODY + 1, 4);
  t.throws(() => requestLength(huge), { message: /exceeds/ });
  const trailing = Buffer.concat([good, Buffer.from([0])]);
  trailing.writeUInt32LE(good.length - 8 + 1, 4);
  t.throws(() => decodeRequest(trailing), { message: /trailing/ });
  const noNul = Buffer.from(good.subarray(0, good.length - 1));
  noNul.writeUInt32LE(noNul.length - 8, 4);
  t.throws(() => decodeRequest(noNul), { instanceOf: ProtocolError });
  const bigList = Buffer.from(good);
  bigList.writeUInt32LE(1_000_000, 8);
  t.throws(() => decodeRequest(bigList), { message: /does not fit/ });
});

test('reply layouts', (t) => {
  const err = encodeErrorReply(3, 'shifter: bad\n');
  t.is(err.toString('latin1', 0, 4), 'SHR1');
  t.is(err.readUInt32LE(4), err.length - 8);
  t.is(err[8], 0);
  t.is(err.readInt32LE(9), 3);
  t.is(err.subarray(13).toString(), 'shifter: bad\n');
  const ok = encodeExecReply(['ls'], ['A=1'], '/w', '');
  t.is(ok[8], 1);
  t.deepEqual(
    [...ok.subarray(9)],
    [...Buffer.from([1, 0, 0, 0]), ...Buffer.from('ls\0'), 1, 0, 0, 0, ...Buffer.from('A=1\0/w\0\0')],
  );
});
