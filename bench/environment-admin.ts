/**
 * shifterd's admin gRPC API from a benchmark script (root; the admin socket is 0600):
 *   node dist/bench/environment-admin.js ADMIN_SOCKET prepare UID GID IMAGE [VOLUME...]
 *     builds (or finds) an environment and prints its key
 *   node dist/bench/environment-admin.js ADMIN_SOCKET release [KEEP_KEY...]
 *     releases every cached environment except KEEP_KEY..., prints how many, so that the
 *     next launch is a cache miss (hyperfine --prepare)
 */
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../node-daemon/admin-server.js';

type Unary<Req, Res> = (req: Req, cb: (err: grpc.ServiceError | null, res: Res) => void) => void;

function call<Req, Res>(client: grpc.Client, method: string, req: Req): Promise<Res> {
  const fn = (client as unknown as Record<string, Unary<Req, Res>>)[method].bind(client);
  return new Promise((resolve, reject) => fn(req, (err, res) => (err ? reject(err) : resolve(res))));
}

async function main(): Promise<void> {
  const [socket, verb, ...rest] = process.argv.slice(2);
  if (socket === undefined || (verb !== 'prepare' && verb !== 'release')) {
    throw new Error('usage: environment-admin ADMIN_SOCKET prepare UID GID IMAGE [VOLUME...] | release [KEEP_KEY...]');
  }
  const Client = shifterdServiceClient(loadShifterdProto());
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    if (verb === 'prepare') {
      const [uid, gid, image, ...volumes] = rest;
      if (image === undefined) throw new Error('prepare needs UID GID IMAGE');
      const info = await call<object, { key: string }>(client, 'PrepareEnvironment', {
        uid: Number(uid),
        gid: Number(gid),
        groups: [],
        image,
        volumes,
        modules: [],
        noModules: false,
      });
      process.stdout.write(`${info.key}\n`);
    } else {
      const keep = new Set(rest);
      const list = await call<object, { environments: { key: string }[] }>(client, 'ListEnvironments', {});
      let released = 0;
      for (const e of list.environments) {
        if (keep.has(e.key)) continue;
        const r = await call<{ key: string }, { released: boolean }>(client, 'ReleaseEnvironment', { key: e.key });
        if (r.released) released += 1;
      }
      process.stdout.write(`${released}\n`);
    }
  } finally {
    client.close();
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`environment-admin: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
