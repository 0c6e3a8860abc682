/**
 * A stand-in for systemd's notify socket: a unix datagram socket bound by a python3 child (Node
 * cannot bind one), which prints each datagram it receives as one JSON string per line. Stopped by pid.
 */
import { spawn } from 'node:child_process';

const RECEIVER = `
import json, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + path[1:] if path.startswith('@') else path)
print(json.dumps('bound'), flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

export interface NotifySocket {
  path: string;
  /** The datagrams received so far, in order. */
  messages(): string[];
  /** Resolves with the messages once `count` have arrived; rejects after timeoutMs. */
  waitFor(count: number, timeoutMs?: number): Promise<string[]>;
  stop(): Promise<void>;
}

/** Binds `path` (absolute, or '@name' for an abstract socket) and resolves once it is bound. */
export async function bindNotifySocket(path: string): Promise<NotifySocket> {
  const child = spawn('python3', ['-c', RECEIVER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const received: string[] = [];
  let bound = false;
  let buffered = '';
  let errors = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    errors += d;
  });
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buffered += d;
    for (let nl = buffered.indexOf('\n'); nl >= 0; nl = buffered.indexOf('\n')) {
      const line = JSON.parse(buffered.slice(0, nl)) as string;
      buffered = buffered.slice(nl + 1);
      if (bound) received.push(line);
      else bound = true;
    }
  });
  const waitFor = async (count: number, timeoutMs = 30_000): Promise<string[]> => {
    const deadline = Date.now() + timeoutMs;
    while (received.length < count) {
      if (child.exitCode !== null) throw new Error(`the notify receiver exited: ${errors}`);
      if (Date.now() > deadline) throw new Error(`only ${JSON.stringify(received)} arrived on ${path}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return [...received];
  };
  const deadline = Date.now() + 30_000;
  while (!bound) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`cannot bind a datagram socket at ${path} (python3 needed): ${errors}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    path,
    messages: () => [...received],
    waitFor,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        process.kill(child.pid!, 'SIGKILL');
        await exited;
      }
    },
  };
}
