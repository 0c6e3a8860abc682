/**
 * The slow links of bench/lazy.sh: for each RTT_MS, a TCP relay on loopback to TARGET_URL's port
 * that adds that round-trip time at 1 Gbit/s each way. This kernel has no qdisc that delays
 * packets (no sch_netem, no sch_fq for departure times; only htb, tbf and ingress), so the link is
 * emulated in user space; every side of the benchmark goes through the same relay.
 * Prints one JSON line {RTT_MS: URL, ...} once all listen; runs until killed.
 * Usage: node dist/bench/lazy-link.js TARGET_URL RTT_MS...
 */
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

const [target, ...rtts] = process.argv.slice(2);
if (target === undefined || rtts.length === 0 || !rtts.every((r) => /^[0-9]+(\.[0-9]+)?$/.test(r))) {
  console.error('usage: lazy-link.js TARGET_URL RTT_MS...');
  process.exit(2);
}

const MIB = 1024 * 1024;

/**
 * One direction of an emulated link (tc netem is not in this kernel): every buffer leaves after
 * the ones before it at `bytesPerMs` and arrives `delayMs` later, in order; the sender is paused
 * while more than 8 MiB is in flight.
 */
function link(from: Socket, to: Socket, delayMs: number, bytesPerMs: number): void {
  const queue: { at: number; data: Buffer | null }[] = [];
  let freeAt = 0;
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  const pump = (): void => {
    timer = undefined;
    const now = performance.now();
    while (queue.length > 0 && queue[0].at <= now) {
      const { data } = queue.shift()!;
      if (data === null) {
        to.end();
        continue;
      }
      to.write(data);
      queued -= data.length;
      if (queued <= 8 * MIB) from.resume();
    }
    if (queue.length > 0) timer = setTimeout(pump, queue[0].at - now);
  };
  const push = (data: Buffer | null): void => {
    const now = performance.now();
    freeAt = Math.max(now, freeAt) + (data === null ? 0 : data.length / bytesPerMs);
    queue.push({ at: freeAt + delayMs, data });
    if (timer === undefined) timer = setTimeout(pump, freeAt + delayMs - now);
  };
  from.on('data', (d: Buffer) => {
    queued += d.length;
    if (queued > 8 * MIB) from.pause();
    push(d);
  });
  from.on('end', () => push(null));
  from.on('close', () => {
    if (queue.length === 0) to.destroy();
  });
}

/** A TCP relay on loopback to a loopback URL's port with `rttMs` and 1 Gbit/s each way. */
async function slowRelay(url: string, rttMs: number): Promise<string> {
  const port = Number(new URL(url).port);
  const gbitPerMs = 1e9 / 8 / 1000;
  const server = createServer((down) => {
    const up = connect(port, '127.0.0.1');
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    link(down, up, rttMs / 2, gbitPerMs);
    link(up, down, rttMs / 2, gbitPerMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const links: Record<string, string> = {};
for (const rtt of rtts) links[rtt] = await slowRelay(target, Number(rtt));
console.log(JSON.stringify(links));
