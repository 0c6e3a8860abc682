/**
 * `accesstype: "remote"`: one gateway, two systems: `sys` with a local imageDir and `far`, whose
 * imageDir is on an ssh host (Debian's sshd, started for the test on a loopback port, as another
 * user). A pull for `far` reaches READY with both files in the remote directory, each visible under
 * its name only when complete, the meta last; a host that refuses the key ends the pull in FAILURE
 * with ssh's own error; removeRemote (for expiry) deletes both files.
 */
import { rootTest as test } from '../../helpers/privileges.js';
import { chown, mkdir, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseGatewayConfig, type RemotePlatformConfig } from '../../../gateway/config/imagemanager.js';
import { removeRemote } from '../../../gateway/transfer/remote.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startSshd, type RunningSshd } from '../../helpers/sshd.js';

let reg: RunningRegistry;
let sshd: RunningSshd;
let gw: RunningGateway;
let dir: string;
let remoteDir: string;
let config: Record<string, unknown>;

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'gw-remote-'));
  reg = await startRegistry();
  sshd = await startSshd();
  remoteDir = join(sshd.home, 'images');
  await mkdir(remoteDir, { mode: 0o755 });
  await chown(remoteDir, sshd.uid, sshd.gid);
  const ssh = {
    username: sshd.user,
    key: sshd.keyFile,
    imageDir: remoteDir,
    sshCmdOptions: sshd.sshOptions,
    scpCmdOptions: sshd.scpOptions,
  };
  config = {
    CacheDirectory: join(dir, 'cache'),
    ExpandDirectory: join(dir, 'expand'),
    Authentication: 'mock',
    DefaultImageLocation: 'site',
    Locations: { site: { url: reg.url } },
    Platforms: {
      sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } },
      far: { accesstype: 'remote', host: [sshd.host], ssh },
      refused: { accesstype: 'remote', host: [sshd.host], ssh: { ...ssh, username: 'root' } },
    },
  };
  gw = await startGateway({ dir, config, timeoutMs: 60_000 });
});

test.after.always(async () => {
  await gw?.stop();
  await sshd?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function pushed(repo: string, size: number, tag = '1'): Promise<string> {
  const content = Buffer.alloc(size);
  // Deterministic (a second push makes the same image) and not very compressible (a long copy).
  for (let i = 0; i + 4 <= size; i += 4) content.writeUInt32LE(Math.imul(i + 1, 2654435761) >>> 0, i);
  const layer = gzipSync(await tarLayer([{ name: 'payload.bin', content }]));
  const image = await pushImage(reg.url, repo, tag, { layers: [layer], config: imageConfig({ Env: ['A=1'] }) });
  return image.manifestDigest.replace(/^sha256:/, '');
}

async function pullUntilDone(system: string, tag: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 600; i++) {
    const res = await fetch(`${gw.url}/api/pull/${system}/docker/${tag}/`, { method: 'POST' });
    const rec = (await res.json()) as Record<string, unknown>;
    if (rec.status === 'READY' || rec.status === 'FAILURE') return rec;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the pull of ${tag} on ${system} did not finish`);
}

test.serial('a pull for the remote system puts both files there, each complete before it has its name', async (t) => {
  const id = await pushed('team/far', 8 << 20);
  const seen: { names: string[]; imageSize: number | null }[] = [];
  let watching = true;
  const watcher = (async () => {
    while (watching) {
      const names = await readdir(remoteDir);
      const image = names.includes(`${id}.squashfs`)
        ? await stat(join(remoteDir, `${id}.squashfs`)).then(
            (s) => s.size,
            () => null,
          )
        : null;
      seen.push({ names, imageSize: image });
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  const rec = await pullUntilDone('far', 'team/far:1');
  watching = false;
  await watcher;
  t.is(rec.status, 'READY', String(rec.status_message) + (await sshd.logs()));
  t.is(rec.id, id);

  const files = (await readdir(remoteDir)).sort();
  t.deepEqual(files, [`${id}.meta`, `${id}.squashfs`], 'no temporary file is left');
  const image = await stat(join(remoteDir, `${id}.squashfs`));
  t.is(image.uid, sshd.uid, 'written by the ssh user');
  t.is(image.mode & 0o777, 0o600);
  t.is((await stat(join(remoteDir, `${id}.meta`))).mode & 0o777, 0o600);
  t.regex(await readFile(join(remoteDir, `${id}.meta`), 'utf8'), /^FORMAT: squashfs\n[\s\S]*ENV: A=1\n/);
  const superblock = (await readFile(join(remoteDir, `${id}.squashfs`))).subarray(0, 4).toString('latin1');
  t.is(superblock, 'hsqs');

  t.true(seen.length > 10, `the watcher looked ${seen.length} times`);
  for (const s of seen) {
    if (s.imageSize !== null) t.is(s.imageSize, image.size, 'the image never shows under its name half written');
    if (s.names.includes(`${id}.meta`)) t.true(s.names.includes(`${id}.squashfs`), 'the meta comes last');
  }
  t.deepEqual(await readdir(join(dir, 'images')).catch(() => []), [], 'nothing went to the local system');
  const lookup = await fetch(`${gw.url}/api/lookup/far/docker/team/far:1/`);
  t.is(lookup.status, 200);
  t.is((await fetch(`${gw.url}/api/lookup/sys/docker/team/far:1/`)).status, 404, 'the local system has no such image');
});

test.serial('the same image under another tag is found on the remote host: only the meta is rewritten', async (t) => {
  const id = await pushed('team/far', 8 << 20, '2');
  const before = await stat(join(remoteDir, `${id}.squashfs`));
  const again = await pullUntilDone('far', 'team/far:2');
  t.is(again.status, 'READY', String(again.status_message));
  t.regex(String(again.status_message), /already on the system/);
  t.is((await stat(join(remoteDir, `${id}.squashfs`))).mtimeMs, before.mtimeMs, 'the image was not copied again');
});

test.serial('a host that refuses the login: FAILURE with the error ssh gave', async (t) => {
  await pushed('team/refused', 4096);
  const rec = await pullUntilDone('refused', 'team/refused:1');
  t.is(rec.status, 'FAILURE');
  t.regex(
    String(rec.status_message),
    /on root@127\.0\.0\.1 \(Platforms\.refused\) failed: .*Permission denied \(publickey\)/,
  );
});

test.serial('removeRemote deletes the image and its meta from the remote imageDir', async (t) => {
  const id = (await readdir(remoteDir)).find((f) => f.endsWith('.squashfs'))!.replace(/\.squashfs$/, '');
  const platform = parseGatewayConfig(config).config.platforms.far as RemotePlatformConfig;
  await removeRemote(platform, id);
  t.deepEqual(await readdir(remoteDir), []);
  await t.notThrowsAsync(removeRemote(platform, id), 'removing it again is not an error');
  await t.throwsAsync(removeRemote(platform, 'x; touch /tmp/owned'), { message: /is not an image id/ });
});
