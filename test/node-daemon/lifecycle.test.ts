/**
 * shifterd's life: kill -9 while a container runs (the container is untouched), restart on the
 * same socket, SIGHUP reload, SIGTERM clean exit, and no loop device left once everything is gone.
 */
import { rootTest as test } from '../helpers/privileges.js';
import { mkdirSync, chownSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ShifterdFixture, ensureTestUser, loopDevicesFor } from './runtime-fixture.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();
test.after.always(async () => {
  await fx.cleanup();
});

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(100);
  }
  return cond();
}

test.serial('kill -9 leaves a running container working; a restarted shifterd serves new launches', async (t) => {
  await fx.start();
  const vol = join(fx.dir, 'vol');
  mkdirSync(vol);
  chownSync(vol, user.uid, user.gid);
  const running = fx.run([
    `--image=${fx.images.full.name}`,
    `--volume=${vol}:/data`,
    'sh',
    '-c',
    'echo started > /data/started; sleep 1.5; cat /etc/passwd | grep -c shiftertest1; ls /data; echo still-here > /data/after',
  ]);
  t.true(await waitFor(() => existsSync(join(vol, 'started')), 10_000), 'container started');
  t.is(await fx.stop('SIGKILL'), null);
  const r = await running;
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '1\nstarted\n');
  t.is(readFileSync(join(vol, 'after'), 'utf8'), 'still-here\n');
  const image = join(fx.imagePath, `${fx.images.full.id}.squashfs`);
  t.true(
    await waitFor(() => loopDevicesFor(image).length === 0, 10_000),
    'the loop device went away with the container and the killed daemon',
  );

  await fx.start(); // the stale socket of the killed daemon is replaced
  const again = await fx.run([`--image=${fx.images.bare.name}`, 'echo', 'new-launch']);
  t.is(again.code, 0, again.stderr);
  t.is(again.stdout, 'new-launch\n');
});

test.serial(
  'SIGHUP reloads the config: new launches see the new siteEnv; a bad config is refused and the old one kept',
  async (t) => {
    if (fx.daemon === undefined) await fx.start();
    const before = await fx.run([`--image=${fx.images.bare.name}`, 'sh', '-c', 'echo $SHIFTER_RUNTIME $SITEVAR']);
    t.is(before.stdout, '1\n');
    fx.writeConfig(['siteEnv=SHIFTER_RUNTIME=1 SITEVAR=reloaded']);
    fx.daemon!.kill('SIGHUP');
    t.true(await waitFor(() => fx.log.includes('configuration reloaded'), 5000));
    const after = await fx.run([`--image=${fx.images.bare.name}`, 'sh', '-c', 'echo $SHIFTER_RUNTIME $SITEVAR']);
    t.is(after.stdout, '1 reloaded\n');

    fx.writeConfig(['siteFs=relative/path']);
    fx.daemon!.kill('SIGHUP');
    t.true(await waitFor(() => fx.log.includes('configuration reload failed'), 5000));
    const still = await fx.run([`--image=${fx.images.bare.name}`, 'sh', '-c', 'echo $SITEVAR']);
    t.is(still.stdout, 'reloaded\n');
    fx.writeConfig(['siteEnv=SHIFTER_RUNTIME=1']);
  },
);

test.serial('SIGTERM exits 0 and removes the socket; no loop device is left once containers exit', async (t) => {
  if (fx.daemon === undefined) await fx.start();
  const image = join(fx.imagePath, `${fx.images.cmdOnly.id}.squashfs`);
  const r = await fx.run([`--image=${fx.images.cmdOnly.name}`]);
  t.is(r.stdout, 'cmd-only\n');
  t.true(loopDevicesFor(image).length > 0, 'the image is attached while shifterd caches its environment');
  t.is(await fx.stop('SIGTERM'), 0);
  t.false(existsSync(fx.socket));
  t.true(
    await waitFor(() => loopDevicesFor(image).length === 0, 10_000),
    `loop devices left: ${loopDevicesFor(image).join(', ')}`,
  );
});

test.serial('shifterd refuses a config that is not root-owned or is group/world writable', async (t) => {
  const { chmodSync } = await import('node:fs');
  chmodSync(fx.configPath, 0o666);
  const err = await t.throwsAsync(fx.start());
  t.regex(err.message, /must not be writable by group or others/);
  chmodSync(fx.configPath, 0o644);
});
