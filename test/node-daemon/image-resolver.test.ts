import test from 'ava';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageResolver, checkImageAcl, metaInfoFromText } from '../../node-daemon/image-resolver.js';

const meta = (acl: string) =>
  metaInfoFromText(`FORMAT: squashfs\nENTRY: ['/run.sh']\nCMD: ['a', 'b']\nWORKDIR: /w\nENV: A=1\n${acl}`, 'x.meta');

test('meta becomes the run config', (t) => {
  t.deepEqual(meta('').run, { entrypoint: ['/run.sh'], cmd: ['a', 'b'], workdir: '/w', env: ['A=1'] });
});

test('public images are open; private ones check uid, primary gid and supplementary groups', (t) => {
  t.notThrows(() => checkImageAcl(meta(''), { uid: 1, gid: 1, groups: [] }, 'img'));
  const priv = meta('USERACL: 1000\nGROUPACL: 500\n');
  t.notThrows(() => checkImageAcl(priv, { uid: 1000, gid: 1, groups: [] }, 'img'));
  t.notThrows(() => checkImageAcl(priv, { uid: 2, gid: 500, groups: [] }, 'img'));
  t.notThrows(() => checkImageAcl(priv, { uid: 2, gid: 2, groups: [7, 500] }, 'img'));
  t.throws(() => checkImageAcl(priv, { uid: 2, gid: 2, groups: [7] }, 'docker:x:1'), {
    message: /permission denied to image docker:x:1/,
  });
});

test('a broken meta file is a config error naming the file', (t) => {
  t.throws(() => metaInfoFromText('ENTRY: x\n', '/images/abc.meta'), { message: /^\/images\/abc\.meta: .*no FORMAT/ });
});

test('the resolver sees a rewritten meta file and a removed image at once, though it keeps parsed metas', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'resolver-'));
  try {
    const id = 'a'.repeat(64);
    const resolver = new ImageResolver({ imagePath: dir, gateways: [], system: undefined, defaultImageType: 'docker' });
    const caller = { uid: 1000, gid: 1000, groups: [] };
    await writeFile(join(dir, `${id}.squashfs`), 'image');
    await writeFile(join(dir, `${id}.meta`), 'FORMAT: squashfs\nENV: V=1\n');
    t.deepEqual((await resolver.resolve(`id:${id}`, caller)).meta.run.env, ['V=1']);
    t.deepEqual((await resolver.resolve(`id:${id}`, caller)).meta.run.env, ['V=1']);

    // The gateway replaces files by rename: a new inode, as here.
    await writeFile(join(dir, 'next.meta'), 'FORMAT: squashfs\nENV: V=2\nUSERACL: 5\n');
    await rename(join(dir, 'next.meta'), join(dir, `${id}.meta`));
    await t.throwsAsync(resolver.resolve(`id:${id}`, caller), { message: /permission denied to image/ });
    await writeFile(join(dir, 'next.meta'), 'FORMAT: squashfs\nENV: V=3\n');
    await rename(join(dir, 'next.meta'), join(dir, `${id}.meta`));
    t.deepEqual((await resolver.resolve(`id:${id}`, caller)).meta.run.env, ['V=3']);

    await rm(join(dir, `${id}.squashfs`));
    await t.throwsAsync(resolver.resolve(`id:${id}`, caller), { message: /has metadata but no .*squashfs/ });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a gateway status that is not a string is shown as JSON, not as [object Object]', async (t) => {
  const gateway = createServer((_req, res) => res.end(JSON.stringify({ status: { phase: 'PULLING' } })));
  await new Promise<void>((resolve) => gateway.listen(0, '127.0.0.1', resolve));
  try {
    const url = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    const resolver = new ImageResolver({
      imagePath: '/nonexistent',
      gateways: [url],
      system: 'sys',
      defaultImageType: 'docker',
    });
    await t.throwsAsync(resolver.resolve('app:1', { uid: 1000, gid: 1000, groups: [] }), {
      message:
        'image docker:app:1 is not ready (status {"phase":"PULLING"}); wait for `shifterimg pull docker:app:1` to finish',
    });
  } finally {
    gateway.closeAllConnections();
    gateway.close();
  }
});

test('local: images need allowLocalChroot and are never looked up in a gateway', async (t) => {
  const caller = { uid: 1000, gid: 1000, groups: [] };
  const options = {
    imagePath: '',
    gateways: ['http://127.0.0.1:9'],
    system: 'sys',
    defaultImageType: 'docker' as const,
  };
  await t.throwsAsync(new ImageResolver(options).resolve('local:/scratch/rootfs', caller), {
    code: 'PERMISSION_DENIED',
    message: /^local: images are disabled on this system \(udiRoot.conf allowLocalChroot=0\)/,
  } as never);
  const allowed = new ImageResolver({ ...options, allowLocalChroot: true });
  const image = await allowed.resolve('local:/scratch/rootfs', caller);
  t.like(image, { kind: 'local', path: '/scratch/rootfs', meta: { userAcl: [], groupAcl: [], run: { env: [] } } });
  await t.throwsAsync(allowed.resolve('local:scratch/rootfs', caller), { message: /absolute/ });
});
