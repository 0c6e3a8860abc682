/** The optional examiner runs on the finished squashfs with (path, id); a non-zero exit fails the pull. */
import test from 'ava';
import { chmod, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { imageConfig, pushImage, startRegistry, tarLayer, type RunningRegistry } from '../../helpers/registry.js';
import { startGateway, type RunningGateway } from '../../helpers/gateway.js';

let reg: RunningRegistry;
let gw: RunningGateway;
let dir: string;

test.before(async () => {
  reg = await startRegistry();
  dir = await mkdtemp(join(tmpdir(), 'gw-exam-'));
  const examiner = join(dir, 'examiner.sh');
  await writeFile(
    examiner,
    `#!/bin/sh
echo "$1 $2" >> ${join(dir, 'examined.log')}
if unsquashfs -l -d '' "$1" | grep -q EICAR; then echo "malware signature EICAR found" >&2; exit 3; fi
exit 0
`,
  );
  await chmod(examiner, 0o755);
  gw = await startGateway({
    dir,
    config: {
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      Authentication: 'mock',
      examiner,
      DefaultImageLocation: 'site',
      Locations: { site: { url: reg.url } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir: join(dir, 'images') } } },
    },
  });
});

test.after.always(async () => {
  await gw?.stop();
  await reg?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function pullUntilDone(tag: string): Promise<Record<string, unknown>> {
  for (let i = 0; ; i++) {
    const res = await fetch(`${gw.url}/api/pull/sys/docker/${tag}/`, { method: 'POST' });
    const rec = (await res.json()) as Record<string, unknown>;
    if (rec.status === 'READY' || rec.status === 'FAILURE' || i > 200) return rec;
    await new Promise((r) => setTimeout(r, 150));
  }
}

test.serial('a clean image passes the examiner, which got the squashfs path and the id', async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'ok.txt', content: 'fine\n' }]));
  const pushed = await pushImage(reg.url, 'team/clean', '1', { layers: [layer], config: imageConfig({}) });
  const id = pushed.manifestDigest.replace('sha256:', '');
  const rec = await pullUntilDone('team/clean:1');
  t.is(rec.status, 'READY', String(rec.status_message));
  const log = await readFile(join(dir, 'examined.log'), 'utf8');
  t.regex(log, new RegExp(`/${id}\\.squashfs ${id}$`, 'm'));
});

test.serial("a rejected image ends in FAILURE with the examiner's message, and nothing is transferred", async (t) => {
  const layer = gzipSync(await tarLayer([{ name: 'EICAR.com', content: 'x\n' }]));
  const pushed = await pushImage(reg.url, 'team/dirty', '1', { layers: [layer], config: imageConfig({}) });
  const id = pushed.manifestDigest.replace('sha256:', '');
  const rec = await pullUntilDone('team/dirty:1');
  t.is(rec.status, 'FAILURE');
  t.regex(
    String(rec.status_message),
    /examiner .* rejected image [0-9a-f]{64} \(exit 3\): malware signature EICAR found/,
  );
  t.false((await readdir(join(dir, 'images'))).some((f) => f.startsWith(id)));
});
