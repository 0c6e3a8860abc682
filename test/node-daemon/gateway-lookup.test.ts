/**
 * shifterd's image resolver looking names up through the shared gateway client, against gateway
 * doubles on loopback: the same paths shifterimg sends, failover past dead and failing gateways,
 * a deadline on silent ones, the lookup cache, and the private-image retry with a credential
 * made as the caller for each attempt.
 */
import test from 'ava';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toImageId } from '../../common/image-descriptor.js';
import { ImageResolver, type ResolvedImage, type ResolverOptions } from '../../node-daemon/image-resolver.js';
import { closedPort, startGatewayDouble } from '../cli/gateway-double.js';

/** The squashfs image id a launch would use (local: images have none). */
const idOf = async (p: Promise<ResolvedImage>) => {
  const image = await p;
  return image.kind === 'squashfs' ? image.id : undefined;
};

const SYSTEM = 'testsys';
const ID = toImageId('cd'.repeat(32));
const CALLER = { uid: 1000, gid: 1000, groups: [] };
let imagePath: string;

test.before(async () => {
  imagePath = await mkdtemp(join(tmpdir(), 'gateway-lookup-'));
  await writeFile(join(imagePath, `${ID}.squashfs`), 'image');
  await writeFile(join(imagePath, `${ID}.meta`), 'FORMAT: squashfs\nENV: A=1\n');
});

test.after.always(async () => {
  if (imagePath) await rm(imagePath, { recursive: true, force: true });
});

function resolver(over: Partial<ResolverOptions> & Pick<ResolverOptions, 'gateways'>): ImageResolver {
  return new ImageResolver({ imagePath, system: SYSTEM, defaultImageType: 'docker', gatewayTimeout: 20, ...over });
}

test('a name is looked up with the same path shifterimg sends, and the answer is cached', async (t) => {
  const gw = await startGatewayDouble({ system: SYSTEM, lookup: { 'docker:me/app:1.0': { id: ID, status: 'READY' } } });
  t.teardown(() => gw.stop());
  const r = resolver({ gateways: [gw.url] });
  t.is(await idOf(r.resolve('me/app:1.0', CALLER)), ID);
  t.is(await idOf(r.resolve('docker:me/app:1.0', CALLER)), ID);
  t.deepEqual(
    gw.requests.map((q) => q.rawUrl),
    [`/api/lookup/${SYSTEM}/docker/me/app%3A1.0/`],
  );
  t.is(gw.requests[0]?.headers.authentication, undefined, 'public lookups are anonymous');
});

test('dead and failing gateways are skipped for one that answers', async (t) => {
  const failing = await startGatewayDouble({
    system: SYSTEM,
    override: { status: 500, body: { error: 'database is down' } },
  });
  const good = await startGatewayDouble({ system: SYSTEM, lookup: { 'docker:app:1': { id: ID, status: 'READY' } } });
  t.teardown(() => Promise.all([failing.stop(), good.stop()]));
  const dead = `http://127.0.0.1:${await closedPort()}`;
  const r = resolver({ gateways: [dead, failing.url, good.url] });
  t.is(await idOf(r.resolve('app:1', CALLER)), ID);
  await t.throwsAsync(resolver({ gateways: [dead, failing.url] }).resolve('app:1', CALLER), {
    message: `cannot look up docker:app:1: the image gateway at ${failing.url} failed (HTTP 500): database is down`,
  });
});

test('a silent gateway: the launch fails at gatewayTimeout, naming the gateway', async (t) => {
  const sockets = new Set<Socket>();
  const silent = createTcpServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        silent.close(() => resolve());
      }),
  );
  const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  const started = Date.now();
  const e = await t.throwsAsync(resolver({ gateways: [url], gatewayTimeout: 1 }).resolve('app:1', CALLER));
  t.is(
    e?.message,
    `image gateway unreachable at ${url} (no answer within 1 s (gatewayTimeout)): cannot look up docker:app:1; ` +
      'check imageGateway in udiRoot.conf, or use --image=id:<id>',
  );
  t.true(Date.now() - started < 20_000);
});

test('a private image: an anonymous 404 is asked again with a credential made as the caller per attempt', async (t) => {
  // Anonymous: 404 (the gateway hides the image). With a credential: the first attempt meets a
  // busy gateway (503), so the lookup moves to the other one, which must get a new credential.
  const seen: (string | undefined)[] = [];
  const gateways: Server[] = [];
  const urls: string[] = [];
  for (let i = 0; i < 2; i++) {
    const server = createServer((req, res) => {
      const cred = req.headers.authentication as string | undefined;
      seen.push(cred);
      if (cred === undefined)
        return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"error": "not found"}');
      if (seen.filter((c) => c !== undefined).length === 1) return void res.writeHead(503).end('{"error": "busy"}');
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: ID, status: 'READY' }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gateways.push(server);
    urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  t.teardown(() => Promise.all(gateways.map((s) => new Promise((resolve) => s.close(resolve)))));
  let made = 0;
  const r = resolver({ gateways: urls, credentialFor: async (c) => `as-${c.uid}-${++made}` });
  t.is(await idOf(r.resolve('secret:1', CALLER)), ID);
  t.deepEqual(seen, [undefined, 'as-1000-1', 'as-1000-2']);

  const noMunge = resolver({ gateways: [urls[1]], credentialFor: async () => undefined });
  await t.throwsAsync(noMunge.resolve('secret:1', CALLER), {
    message: /^image not found: docker:secret:1 is not on testsys/,
  });
});
