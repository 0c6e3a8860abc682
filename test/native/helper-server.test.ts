/** The namespace helper server lives and dies with the daemon process that started it. Needs root. */
import { rootTest as test } from '../helpers/privileges.js';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

function serversOf(parent: number): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        return (
          Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === parent &&
          readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('shifter-nshelper\0serve')
        );
      } catch {
        return false;
      }
    });
}

test('a daemon killed with SIGKILL takes its helper server with it', async (t) => {
  const index = join(process.cwd(), 'dist/node-daemon/adapters/index.js');
  // A stand-in daemon: one failing request starts the server; then it idles.
  const daemon = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
    const { attachImage } = await import(${JSON.stringify(index)});
    await attachImage('/nonexistent.sqfs').catch((e) => console.log(e.message));
    setInterval(() => {}, 1000);
  `,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const said = await new Promise<string>((resolve) =>
      daemon.stdout.once('data', (d: Buffer) => resolve(d.toString())),
    );
    t.regex(said, /^shifter-nshelper: open image: \/nonexistent\.sqfs: No such file or directory/);
    const servers = serversOf(daemon.pid!);
    t.is(servers.length, 1);
    daemon.kill('SIGKILL');
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      await new Promise((r) => setTimeout(r, 20));
      gone = !existsSync(`/proc/${servers[0]}`) || readFileSync(`/proc/${servers[0]}/stat`, 'utf8').includes(') Z ');
    }
    t.true(gone);
  } finally {
    daemon.kill('SIGKILL');
  }
});
