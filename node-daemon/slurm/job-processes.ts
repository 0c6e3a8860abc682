/**
 * The processes a job left inside its environment (e.g. `setsid` daemons, which proctrack/linuxproc
 * does not see once they are reparented): found by their mount namespace, as root, and killed in
 * the epilog so that the environment's mounts and loop device go with them.
 */
import { readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** "mnt:[4026532301]" -> 4026532301; anything else: undefined. */
export function parseMountNamespaceLink(link: string): number | undefined {
  const m = /^mnt:\[(\d+)\]$/.exec(link);
  return m === null ? undefined : Number(m[1]);
}

/** Pids of `uid` whose mount namespace is one of `namespaces`; processes that exit meanwhile are skipped. */
export async function processesInNamespaces(
  namespaces: ReadonlySet<number>,
  uid: number,
  procRoot = '/proc',
): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir(procRoot)) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const ns = parseMountNamespaceLink(await readlink(join(procRoot, name, 'ns', 'mnt')));
      if (ns === undefined || !namespaces.has(ns)) continue;
      if ((await stat(join(procRoot, name))).uid !== uid) continue;
      pids.push(Number(name));
    } catch {
      continue;
    }
  }
  return pids;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SIGKILLs `uid`'s processes in `namespaces` until none is left (a process may fork while we
 * scan), for at most `timeoutMs`. Returns how many were killed and how many remain.
 */
export async function killProcessesInNamespaces(
  namespaces: ReadonlySet<number>,
  uid: number,
  timeoutMs = 20_000,
): Promise<{ killed: number; left: number }> {
  const killed = new Set<number>();
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = await processesInNamespaces(namespaces, uid);
    if (pids.length === 0 || Date.now() > deadline) return { killed: killed.size, left: pids.length };
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
        killed.add(pid);
      } catch {
        continue;
      }
    }
    await sleep(100);
  }
}
