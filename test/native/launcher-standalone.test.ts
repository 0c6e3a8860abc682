/**
 * What the real `shifter` binary says where shifterd does not answer (a login node, a node whose
 * daemon is down): --help and --version from its built-in copy, the same text shifterd gives;
 * anything else one line naming the socket, the errno in words and the site's contact.
 */
import test from 'ava';
import { rootTest } from '../helpers/privileges.js';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { shifterHelpText } from '../../node-daemon/command/options.js';
import { LAUNCHER, ShifterdFixture, type RunResult } from '../node-daemon/runtime-fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'launcher-standalone-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const missingSocket = join(dir, 'no-such-dir', 'shifterd.sock');
const helpText = shifterHelpText().replace(/\n+$/, '\n');

function runLauncher(args: string[], env: Record<string, string>): Promise<RunResult> {
  const child = spawn(LAUNCHER, args, { env: { PATH: '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

function conf(name: string, lines: string[]): string {
  const path = join(dir, name);
  writeFileSync(path, [...lines, ''].join('\n'));
  return path;
}

const noConf = join(dir, 'absent-udiRoot.conf');

for (const flag of ['--help', '-h']) {
  test(`shifter ${flag} without shifterd prints the help shifterd would give`, async (t) => {
    const r = await runLauncher([flag], { SHIFTERD_SOCKET: missingSocket, SHIFTER_UDIROOT_CONF: noConf });
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, helpText);
    t.is(r.stderr, '');
  });
}

test('a launch with no shifterd says so in one line, with the socket and the errno in words', async (t) => {
  const r = await runLauncher(['--image=ubuntu:22.04', 'true'], {
    SHIFTERD_SOCKET: missingSocket,
    SHIFTER_UDIROOT_CONF: noConf,
  });
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.is(
    r.stderr,
    `shifter: shifterd is not running on this node (${missingSocket}: No such file or directory); ` +
      "tell your site's support\n",
  );
});

test("the site's contact from udiRoot.conf is named, found where shifterdSocket is", async (t) => {
  const path = conf('contact.conf', ['# where users ask', 'siteContact = hpc-help@example.org', 'imagePath=/images']);
  const r = await runLauncher(['true'], { SHIFTERD_SOCKET: missingSocket, SHIFTER_UDIROOT_CONF: path });
  t.is(r.code, 1);
  t.is(
    r.stderr,
    `shifter: shifterd is not running on this node (${missingSocket}: No such file or directory); ` +
      'contact hpc-help@example.org\n',
  );
});

test('a socket nobody listens on (a daemon that died) is "not running", refused', async (t) => {
  const socket = join(dir, 'stale.sock');
  // Bound and never listened on, left behind: what a killed daemon leaves.
  execFileSync('python3', ['-c', 'import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', socket]);
  const path = conf('stale.conf', [`shifterdSocket=${socket}`, 'siteContact=https://help.example.org/shifter']);
  const r = await runLauncher(['true'], { SHIFTER_UDIROOT_CONF: path });
  t.is(r.code, 1);
  t.is(
    r.stderr,
    `shifter: shifterd is not running on this node (${socket}: Connection refused); contact https://help.example.org/shifter\n`,
  );
});

rootTest.serial('shifter --help and --version through a running shifterd print the same text', async (t) => {
  const fx = new ShifterdFixture();
  t.teardown(() => fx.cleanup());
  await fx.start();
  const through = await fx.run(['--help']);
  t.is(through.code, 0, through.stderr);
  t.is(through.stdout, helpText);
  const standalone = await runLauncher(['--help'], { SHIFTERD_SOCKET: missingSocket, SHIFTER_UDIROOT_CONF: noConf });
  t.is(standalone.stdout, through.stdout);
  const version = await fx.run(['--version']);
  const standaloneVersion = await runLauncher(['--version'], { SHIFTERD_SOCKET: missingSocket });
  t.is(version.code, 0, version.stderr);
  t.is(version.stdout, standaloneVersion.stdout);
});
