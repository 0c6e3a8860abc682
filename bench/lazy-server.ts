/**
 * The image side of bench/lazy.sh: the node test's chunk server (the gateway's chunk routes over
 * one squashfs file, test/node-daemon/lazy/chunk-server.ts, 1 MiB chunks as the gateway's
 * default) plus a control port that serves the whole file (the copy-first side), reports the
 * bytes each side sent and forgets the recorded prefetch profile. For each RTT_MS, both are also
 * reachable through a relay that adds that round-trip time at 1 Gbit/s.
 * Prints one JSON line {chunks, control, links: {RTT_MS: {chunks, control}}} once all listen.
 * Usage: node dist/bench/lazy-server.js IMAGE.squashfs TAG [RTT_MS...]
 */
import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, connect, type AddressInfo, type Socket } from 'node:net';
import { createReadStream, statSync } from 'node:fs';
import { startChunkServer } from '../test/node-daemon/lazy/chunk-server.js';

const [file, tag, ...rtts] = process.argv.slice(2);
if (file === undefined || tag === undefined) {
  console.error('usage: lazy-server.js IMAGE.squashfs TAG [RTT_MS...]');
  process.exit(2);
}
const chunks = await startChunkServer(file, { chunkSize: 1024 * 1024, lookupTag: tag });
const size = statSync(file).size;
let wholeBytes = 0;

function profileChunks(): number {
  if (chunks.profile === undefined) return 0;
  return (JSON.parse(chunks.profile.toString('utf8')) as { chunks: number[] }).chunks.length;
}

const control: Server = createServer((req, res) => {
  const route = `${req.method ?? ''} ${req.url ?? ''}`;
  if (route === 'GET /image') {
    res.writeHead(200, { 'content-length': size });
    const s = createReadStream(file);
    s.on('data', (d) => (wholeBytes += d.length));
    s.pipe(res);
  } else if (route === 'GET /stats') {
    const stats = {
      imageBytes: size,
      chunkBytes: chunks.bytesServed,
      chunkRequests: chunks.chunkRequests.length,
      wholeBytes,
      profileChunks: profileChunks(),
    };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(stats));
  } else if (route === 'POST /reset') {
    chunks.bytesServed = 0;
    chunks.chunkRequests.length = 0;
    wholeBytes = 0;
    res.writeHead(204).end();
  } else if (route === 'DELETE /profile') {
    chunks.profile = undefined;
    res.writeHead(204).end();
  } else {
    res.writeHead(404).end();
  }
});
await new Promise<void>((resolve) => control.listen(0, '127.0.0.1', resolve));
const controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`;

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
  const server = createTcpServer((down) => {
    const up = connect(port, '127.0.0.1');
    down.on('error', () => up.destroy());
    up.on('error', () => down.destroy());
    link(down, up, rttMs / 2, gbitPerMs);
    link(up, down, rttMs / 2, gbitPerMs);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const links: Record<string, { chunks: string; control: string }> = {};
for (const rtt of rtts) {
  links[rtt] = { chunks: await slowRelay(chunks.url, Number(rtt)), control: await slowRelay(controlUrl, Number(rtt)) };
}
console.log(JSON.stringify({ chunks: chunks.url, control: controlUrl, links }));
