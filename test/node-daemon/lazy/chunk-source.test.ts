/**
 * The chunk source's node tokens against a real HTTP server that issues them as the gateway does:
 * one munge exchange serves many requests, a token the server no longer accepts (the gateway
 * restarted) gets one fresh exchange and the request is answered.
 */
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ImageId } from '../../../common/image-descriptor.js';
import { ChunkSource } from '../../../node-daemon/lazy/chunk-source.js';

const ID = 'a'.repeat(64) as ImageId;
const DIGEST = 'b'.repeat(64);

async function tokenServer(t: { teardown: (f: () => Promise<void>) => void }) {
  const state = { valid: '', issued: 0, sessionCredentials: [] as string[] };
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url === '/api/chunks/sys/session') {
      state.sessionCredentials.push(String(req.headers.authentication));
      state.valid = `token-${++state.issued}`;
      const body = JSON.stringify({ token: state.valid, expires: Math.floor(Date.now() / 1000) + 3600 });
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    }
    if (req.headers.authorization !== `Bearer ${state.valid}`) {
      return void res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
    }
    res.writeHead(200).end('chunk bytes');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, state };
}

test('one munge exchange serves every request; a token no longer accepted is exchanged once more', async (t) => {
  const { url, state } = await tokenServer(t);
  let made = 0;
  const source = new ChunkSource({
    bases: [url],
    system: 'sys',
    credential: () => Promise.resolve(`munge-credential-${++made}`),
  });
  const got = await Promise.all([1, 2, 3, 4].map(() => source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))));
  t.deepEqual(
    got.map((b) => b.toString()),
    Array(4).fill('chunk bytes'),
  );
  t.deepEqual(state.sessionCredentials, ['munge-credential-1']);

  state.valid = 'the gateway restarted';
  t.is((await source.chunk(ID, DIGEST, AbortSignal.timeout(10_000))).toString(), 'chunk bytes');
  t.deepEqual(state.sessionCredentials, ['munge-credential-1', 'munge-credential-2']);
});

test('a gateway refusing the node credential: the error names the base and the session answer', async (t) => {
  const server = createServer((_req, res) => {
    res.writeHead(403, { 'content-type': 'application/json' }).end('{"error":"only root on a compute node"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const source = new ChunkSource({ bases: [url], system: 'sys', credential: () => Promise.resolve('cred') });
  const e = await t.throwsAsync(source.chunk(ID, DIGEST, AbortSignal.timeout(10_000)));
  t.is(
    e?.message,
    `cannot fetch chunk ${DIGEST} of image ${ID}: ${url} (no node token: HTTP 403 only root on a compute node)`,
  );
});
