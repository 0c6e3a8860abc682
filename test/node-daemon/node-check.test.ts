/**
 * shifter-node-check against the real parts: munged, the gateway process and shifterd all up
 * (every line ok, exit 0), then each stopped in turn (its lines FAIL with what to do, exit 1).
 */
import { rootTest as test } from '../helpers/privileges.js';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startGateway, siteGatewayConfig, type RunningGateway } from '../helpers/gateway.js';
import { startMunged, type Munged } from '../helpers/munge.js';
import { REPO, ShifterdFixture } from './runtime-fixture.js';

const CHECK = join(REPO, 'bin', 'shifter-node-check');
const dir = mkdtempSync(join(tmpdir(), 'node-check-'));
const fx = new ShifterdFixture();
let munged: Munged | undefined;
let gateway: RunningGateway | undefined;

test.before(async () => {
  mkdirSync(join(dir, 'images'));
  munged = await startMunged();
  gateway = await startGateway({ config: siteGatewayConfig(dir, 'http://127.0.0.1:9'), dir });
  await fx.start();
});

test.after.always(async () => {
  await fx.cleanup();
  await gateway?.stop();
  await munged?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** The node's udiRoot.conf as the check reads it: this test's shifterd, gateway and munged. */
function nodeConf(extra: string[] = []): string {
  const path = join(dir, `udiRoot-${extra.length}.conf`);
  const lines = [
    'system=sys',
    `imageGateway=${gateway!.url}`,
    `mungeSocketPath=${munged!.socket}`,
    `shifterdSocket=${fx.socket}`,
    `imagePath=${fx.imagePath}`,
    ...extra,
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

async function check(conf: string): Promise<{ code: number; lines: string[] }> {
  try {
    const r = await promisify(execFile)(CHECK, ['--config', conf, '--timeout', '20']);
    return { code: 0, lines: r.stdout.trimEnd().split('\n') };
  } catch (e) {
    const err = e as { code: number; stdout: string };
    return { code: err.code, lines: err.stdout.trimEnd().split('\n') };
  }
}

const line = (lines: string[], name: string): string =>
  lines.find((l) => l.includes(` ${name}`)) ?? `(no ${name} line)`;

test.serial('everything up: one ok line per check and exit 0', async (t) => {
  const r = await check(nodeConf());
  t.is(r.code, 0, r.lines.join('\n'));
  t.deepEqual(
    r.lines.map((l) => l.split(':')[0].replace(/ \/.*$/, '')),
    [
      'ok   configuration',
      'ok   shifterd launch socket',
      'ok   shifterd admin socket',
      'ok   image gateway',
      'ok   munge',
      'ok   loop devices',
      'ok   squashfs',
    ],
  );
  t.regex(line(r.lines, 'shifterd launch socket'), /answered shifter-ts \d+\.\d+\.\d+/);
});

test.serial('with lazyImageCache set the FUSE check runs too', async (t) => {
  const r = await check(nodeConf([`lazyImageCache=${join(dir, 'lazy')}`, 'lazyImageCacheSize=1g']));
  t.is(r.code, 0, r.lines.join('\n'));
  t.regex(line(r.lines, 'FUSE'), /^ok {3}FUSE \(lazyImageCache=.*\): \/dev\/fuse is usable/);
});

test.serial('munged stopped: the munge line fails and says to start munged', async (t) => {
  await munged!.stop();
  const r = await check(nodeConf());
  t.is(r.code, 1);
  t.regex(line(r.lines, 'munge'), /^FAIL munge .*; start munged \(systemctl start munge\)/);
  t.is(r.lines.filter((l) => l.startsWith('FAIL')).length, 1, r.lines.join('\n'));
  munged = await startMunged();
});

test.serial('the gateway stopped: the gateway line fails, naming the URL', async (t) => {
  const url = gateway!.url;
  await gateway!.stop();
  const r = await check(nodeConf());
  t.is(r.code, 1);
  t.regex(line(r.lines, 'image gateway'), new RegExp(`^FAIL image gateway: ${url}: connection refused; start`));
  t.is(r.lines.filter((l) => l.startsWith('FAIL')).length, 1, r.lines.join('\n'));
  gateway = await startGateway({ config: siteGatewayConfig(dir, 'http://127.0.0.1:9'), dir });
});

test.serial('shifterd stopped: both socket lines say it is not running', async (t) => {
  await fx.stop();
  const r = await check(nodeConf());
  t.is(r.code, 1);
  t.is(
    line(r.lines, 'shifterd launch socket'),
    `FAIL shifterd launch socket ${fx.socket}: shifterd is not running (no such file or directory); ` +
      'start shifterd (systemctl start shifterd) and read its log (journalctl -u shifterd)',
  );
  t.regex(line(r.lines, 'shifterd admin socket'), /^FAIL shifterd admin socket .*: shifterd is not running/);
  t.is(r.lines.filter((l) => l.startsWith('FAIL')).length, 2, r.lines.join('\n'));
});

test.serial('an unreadable config fails its line and the other checks still run', async (t) => {
  const r = await check(join(dir, 'missing.conf'));
  t.is(r.code, 1);
  t.regex(r.lines[0], /^FAIL configuration .*missing\.conf: /);
  t.regex(line(r.lines, 'squashfs'), /^ok/);
});
