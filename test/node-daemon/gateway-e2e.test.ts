/**
 * The whole path a user takes: an image pushed to a real registry, pulled by the real gateway
 * into imagePath, then `shifter --image=team/solver:2.1` resolved by shifterd through the
 * gateway's lookup and run. Also the two lookup failures users meet: unknown image, gateway down.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import {
  imageConfig,
  pushImage,
  startRegistry,
  tarLayer,
  freePort,
  type RunningRegistry,
} from '../helpers/registry.js';
import { startGateway, type RunningGateway } from '../helpers/gateway.js';
import { ShifterdFixture } from './runtime-fixture.js';

const fx = new ShifterdFixture();
let reg: RunningRegistry | undefined;
let gw: RunningGateway | undefined;

test.before(async () => {
  reg = await startRegistry();
  const layer = gzipSync(
    await tarLayer([
      { name: 'bin', type: 'directory' },
      { name: 'bin/busybox', content: readFileSync('/bin/busybox'), mode: 0o755 },
      { name: 'bin/sh', type: 'symlink', linkname: 'busybox' },
      { name: 'bin/echo', type: 'symlink', linkname: 'busybox' },
      { name: 'bin/pwd', type: 'symlink', linkname: 'busybox' },
      { name: 'opt/solver/run', content: '#!/bin/sh\necho "solver $SOLVER_MODE $*"\n', mode: 0o755 },
    ]),
  );
  await pushImage(reg.url, 'team/solver', '2.1', {
    layers: [layer],
    config: imageConfig({
      Env: ['PATH=/bin', 'SOLVER_MODE=fast'],
      Entrypoint: ['/opt/solver/run'],
      Cmd: ['--default'],
      WorkingDir: '/opt/solver',
    }),
  });
  gw = await startGateway({
    dir: fx.dir,
    config: {
      CacheDirectory: `${fx.dir}/gw-cache`,
      ExpandDirectory: `${fx.dir}/gw-expand`,
      Authentication: 'mock',
      WorkerThreads: 1,
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: { testsys: { accesstype: 'local', local: { imageDir: fx.imagePath }, admins: ['root'] } },
    },
  });
  const deadline = Date.now() + 45_000;
  for (;;) {
    const res = await fetch(`${gw.url}/api/pull/testsys/docker/team/solver:2.1/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authentication: 'good:alice:users::1000:100' },
      body: '{}',
    });
    const rec = (await res.json()) as { status?: string; status_message?: string };
    if (rec.status === 'READY') break;
    if (rec.status === 'FAILURE' || Date.now() > deadline) throw new Error(`pull failed: ${JSON.stringify(rec)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  fx.writeConfig([`imageGateway=${gw.url}`, 'system=testsys', 'defaultImageType=docker']);
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
  await gw?.stop();
  await reg?.stop();
});

test('a pulled docker image runs by name: ENTRYPOINT + CMD, image ENV and WORKDIR', async (t) => {
  const r = await fx.run(['--image=team/solver:2.1']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'solver fast --default\n');
  const w = await fx.run([
    '--image=docker:team/solver:2.1',
    '--workdir',
    'sh',
    '-c',
    'pwd; echo $SHIFTER_IMAGEREQUEST',
  ]);
  t.is(w.stdout, '/opt/solver\ndocker:team/solver:2.1\n');
});

test('an image the gateway does not have: a clear error naming shifterimg pull', async (t) => {
  const r = await fx.run(['--image=team/missing:1.0', 'true']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^shifter: image not found: docker:team\/missing:1\.0 .*shifterimg pull docker:team\/missing:1\.0/);
});

test('a gateway that does not answer: "image gateway unreachable at ..."', async (t) => {
  const port = await freePort();
  const other = new ShifterdFixture();
  try {
    other.writeConfig([`imageGateway=http://127.0.0.1:${port}`, 'system=testsys']);
    await other.start();
    const r = await other.run(['--image=team/solver:2.1', 'true']);
    t.is(r.code, 1);
    t.regex(r.stderr, new RegExp(`^shifter: image gateway unreachable at http://127.0.0.1:${port} \\(ECONNREFUSED\\)`));
  } finally {
    await other.cleanup();
  }
});
