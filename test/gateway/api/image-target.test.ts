/**
 * The URL's tag is parsed once, at the API edge, into the typed reference the pull uses; a pull
 * resumed at restart parses its stored tag instead.
 */
import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../../common/logger.js';
import { lookupTarget, pullTarget } from '../../../gateway/api/image-target.js';
import { parseGatewayConfig } from '../../../gateway/config/imagemanager.js';
import { PullManager } from '../../../gateway/pull/manager.js';
import { openImageStore } from '../../../gateway/store/open-store.js';

const params = (imgtype: 'docker' | 'custom' | 'id', tag: string) => ({ system: 'sys', imgtype, '*': tag });

test('a pull carries the record tag (":latest" added) and the parsed reference', (t) => {
  t.deepEqual(pullTarget(params('docker', 'team/app/'), 'index.docker.io'), {
    itype: 'docker',
    tag: 'team/app:latest',
    ref: { location: 'index.docker.io', repository: 'team/app', tag: 'latest', digest: null },
  });
  t.deepEqual(
    pullTarget(params('docker', '127.0.0.1:5000/a/b:1'), 'index.docker.io').ref,
    { location: '127.0.0.1:5000', repository: 'a/b', tag: '1', digest: null },
    'a registry port is not a tag (#156)',
  );
  t.deepEqual(pullTarget(params('docker', 'ubuntu'), 'index.docker.io').ref.repository, 'library/ubuntu');
});

test('a pull of an invalid reference or of another type is refused at the edge with the fix', (t) => {
  t.throws(() => pullTarget(params('docker', 'Bad Name'), 'index.docker.io'), {
    message: /invalid image reference "Bad Name:latest"/,
  });
  t.throws(() => pullTarget(params('custom', 'x'), 'index.docker.io'), {
    message: /type "custom" cannot be pulled; use type docker/,
  });
  t.throws(() => pullTarget(params('docker', '/'), 'index.docker.io'), {
    message: /image tag is missing from the URL/,
  });
});

test("lookups keep upstream's tags: custom gets :latest, id is taken as is, docker must parse", (t) => {
  t.deepEqual(lookupTarget(params('custom', 'thing'), 'x'), { itype: 'custom', tag: 'thing:latest' });
  t.deepEqual(lookupTarget(params('id', 'ab12'), 'x'), { itype: 'id', tag: 'ab12' });
  t.deepEqual(lookupTarget(params('docker', 'a/b:1/'), 'x'), { itype: 'docker', tag: 'a/b:1' });
  t.throws(() => lookupTarget(params('docker', 'a//b'), 'x'), { message: /empty path component/ });
});

test('a stored in-flight tag that does not parse fails its record at restart; the gateway still starts', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'gw-resume-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const { config } = parseGatewayConfig({
    CacheDirectory: join(dir, 'cache'),
    ExpandDirectory: join(dir, 'expand'),
    Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
  });
  const store = await openImageStore(config);
  t.teardown(() => store.close());
  const rec = await store.createPull({
    system: 'sys',
    itype: 'docker',
    pulltag: 'Not A Reference',
    userACL: [],
    groupACL: [],
    requesterUid: null,
    format: 'squashfs',
    credentialed: false,
    now: Date.now() / 1000,
  });
  const manager = new PullManager(store, config, createLogger('test', 'silent'));
  await t.notThrowsAsync(manager.recover());
  await manager.stop();
  const after = await store.get(rec.key);
  t.is(after?.status, 'FAILURE');
  t.is(
    after?.status_message,
    'the gateway restarted and cannot resume "Not A Reference": it is not a valid image reference',
  );
});
