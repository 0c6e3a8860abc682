/**
 * A private sshd for a test: Debian's openssh-server (`/usr/sbin/sshd -D -f <own config>`) on a
 * free loopback port, with its own host key, one user it lets in (an account made with useradd,
 * shell /bin/sh, home in the test's directory) by one key pair made here, and nothing else
 * (no passwords, no PAM). The client side gets the key, a known_hosts file holding the host key,
 * and the ssh/scp options that use them. Stopped by pid.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './registry.js';

export const SSHD = '/usr/sbin/sshd';

export interface RunningSshd {
  host: string;
  port: number;
  user: string;
  uid: number;
  gid: number;
  /** The user's home (owned by them): put remote imageDirs under it. */
  home: string;
  /** The private key the user is let in with (owned by root, 0600). */
  keyFile: string;
  /** `sshCmdOptions` / `scpCmdOptions` that reach this server and trust its host key. */
  sshOptions: string[];
  scpOptions: string[];
  /** What sshd logged (stderr, LogLevel VERBOSE). */
  logs(): Promise<string>;
  stop(): Promise<void>;
}

function ensureUser(name: string, home: string): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
    execFileSync('usermod', ['-d', home, '-s', '/bin/sh', name]);
  } catch {
    execFileSync('useradd', ['-M', '-d', home, '-s', '/bin/sh', name]);
  }
  // A new account is locked ("!"), and sshd refuses locked accounts even for keys: "*" is no password.
  execFileSync('usermod', ['-p', '*', name]);
  const id = (flag: string) => Number(execFileSync('id', [flag, name]).toString().trim());
  return { uid: id('-u'), gid: id('-g') };
}

async function waitForPort(port: number, child: ChildProcess, log: () => Promise<string>): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`sshd exited (${child.exitCode ?? child.signalCode}): ${await log()}`);
    }
    const open = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`sshd did not listen on ${port} within 20 s: ${await log()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startSshd(user = 'gwlogin-ssh'): Promise<RunningSshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} is missing: install openssh-server (apt-get install openssh-server)`);
  const dir = await mkdtemp(join(tmpdir(), 'sshd-'));
  execFileSync('chmod', ['0755', dir]);
  const home = join(dir, 'home');
  const { uid, gid } = ensureUser(user, home);
  await mkdir(home, { mode: 0o755 });
  await chown(home, uid, gid);
  // sshd's privilege separation needs this directory; Debian makes it only when the service starts.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  const hostKey = join(dir, 'host_ed25519');
  const keyFile = join(dir, 'client_ed25519');
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'shifter-test', '-f', keyFile]);
  const authorizedKeys = join(dir, 'authorized_keys');
  await writeFile(authorizedKeys, await readFile(`${keyFile}.pub`), { mode: 0o644 });
  const port = await freePort();
  const knownHosts = join(dir, 'known_hosts');
  const hostPub = (await readFile(`${hostKey}.pub`, 'utf8')).trim().split(' ').slice(0, 2).join(' ');
  await writeFile(knownHosts, `[127.0.0.1]:${port} ${hostPub}\n`);
  const config = join(dir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      `AuthorizedKeysFile ${authorizedKeys}`,
      `AllowUsers ${user}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // The key files live in a temp dir that sshd's ownership checks would not accept.
      'StrictModes no',
      'LogLevel VERBOSE',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'),
  );
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let out = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const log = () => Promise.resolve(out);
  try {
    await waitForPort(port, child, log);
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const trust = ['-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes'];
  return {
    host: '127.0.0.1',
    port,
    user,
    uid,
    gid,
    home,
    keyFile,
    sshOptions: ['-p', String(port), ...trust],
    scpOptions: ['-P', String(port), ...trust],
    logs: log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null && child.pid) {
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid, 'SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
