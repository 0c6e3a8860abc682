/** The gRPC admin API on the root-only socket: Status, PrepareEnvironment (then reused by a launch), List, Release. */
import { rootTest as test } from '../helpers/privileges.js';
import * as grpc from '@grpc/grpc-js';
import { loadShifterdProto, shifterdServiceClient } from '../../node-daemon/admin-server.js';
import { ShifterdFixture, ensureTestUser, EXTRA_GID } from './runtime-fixture.js';

const user = ensureTestUser();
const fx = new ShifterdFixture();
/** The replies, as @grpc/proto-loader decodes proto/shifterd.proto (camelCase, uint64 as a string). */
interface EnvironmentInfo {
  key: string;
  uid: number;
  imageId: string;
  reused: boolean;
  setupMs: number;
}
interface EnvironmentEntry {
  key: string;
  uid: number;
  imageId: string;
  leases: number;
  idleSeconds: number;
  holders: string[];
}
interface Replies {
  Status: {
    environments: number;
    imagesAttached: number;
    configGeneration: string;
    uptimeSeconds: number;
    configFile: string;
    launchSocket: string;
  };
  PrepareEnvironment: EnvironmentInfo;
  ListEnvironments: { environments: EnvironmentEntry[] };
  ReleaseEnvironment: { released: boolean; kept: number; mountNamespaces: number[] };
}
type Method = keyof Replies;
type Unary = (req: unknown, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

let client: grpc.Client & Record<Method, Unary>;

test.before(async () => {
  await fx.start();
  const Ctor = shifterdServiceClient(loadShifterdProto());
  client = new Ctor(`unix://${fx.adminSocket}`, grpc.credentials.createInsecure()) as unknown as typeof client;
});
test.after.always(async () => {
  client?.close();
  await fx.cleanup();
});

function call<M extends Method>(method: M, req: unknown): Promise<Replies[M]> {
  return new Promise((resolve, reject) =>
    client[method](req, (err, res) => (err ? reject(err) : resolve(res as Replies[M]))),
  );
}

test.serial('Status reports the daemon state', async (t) => {
  const s = await call('Status', {});
  t.is(s.configFile, fx.configPath);
  t.is(s.launchSocket, fx.socket);
  t.is(Number(s.configGeneration), 1);
  t.is(s.environments, 0);
});

test.serial('PrepareEnvironment builds what a later launch reuses; List and Release', async (t) => {
  const info = await call('PrepareEnvironment', {
    uid: user.uid,
    gid: user.gid,
    groups: [user.gid, EXTRA_GID],
    image: fx.images.bare.name,
  });
  t.false(info.reused);
  t.is(info.imageId, fx.images.bare.id);
  const list = await call('ListEnvironments', {});
  t.deepEqual(
    list.environments.map((e) => [e.key, e.uid, e.imageId]),
    [[info.key, user.uid, fx.images.bare.id]],
  );
  const launch = await fx.run([`--image=${fx.images.bare.name}`, '-v', 'true']);
  t.is(launch.code, 0, launch.stderr);
  t.regex(launch.stderr, /environment reused/);
  t.true((await call('ReleaseEnvironment', { key: info.key })).released);
  t.false((await call('ReleaseEnvironment', { key: info.key })).released);
  t.is((await call('Status', {})).environments, 0);
});

test.serial('errors map to gRPC status codes with the same messages', async (t) => {
  const root = await t.throwsAsync<grpc.ServiceError>(
    call('PrepareEnvironment', { uid: 0, gid: 0, image: fx.images.bare.name }),
  );
  t.is(root.code, grpc.status.PERMISSION_DENIED);
  const missing = await t.throwsAsync<grpc.ServiceError>(
    call('PrepareEnvironment', { uid: user.uid, gid: user.gid, groups: [user.gid], image: `id:${'1'.repeat(64)}` }),
  );
  t.is(missing.code, grpc.status.NOT_FOUND);
  t.regex(missing.details, /not on this system/);
  const bad = await t.throwsAsync<grpc.ServiceError>(
    call('PrepareEnvironment', { uid: user.uid, gid: user.gid, image: fx.images.bare.name, volumes: ['/x:/etc'] }),
  );
  t.is(bad.code, grpc.status.INVALID_ARGUMENT);
  const unheld = await t.throwsAsync<grpc.ServiceError>(
    call('PrepareEnvironment', { uid: user.uid, gid: user.gid, image: fx.images.bare.name, hostsfile: 'n1\n' }),
  );
  t.is(unheld.code, grpc.status.INVALID_ARGUMENT);
  t.regex(unheld.details, /hostsfile is for a job environment: give its holder/);
});

test.serial('a held environment outlives the idle limit until its last holder releases it', async (t) => {
  await fx.stop();
  await fx.start(['--cache-idle-seconds', '1']);
  client.close();
  const Ctor = shifterdServiceClient(loadShifterdProto());
  client = new Ctor(`unix://${fx.adminSocket}`, grpc.credentials.createInsecure()) as unknown as typeof client;
  const request = { uid: user.uid, gid: user.gid, groups: [user.gid, EXTRA_GID], image: fx.images.bare.name };
  const held = await call('PrepareEnvironment', { ...request, hold: 'slurm-job-1' });
  t.true((await call('PrepareEnvironment', { ...request, hold: 'slurm-job-2' })).reused);
  await call('PrepareEnvironment', { ...request, groups: [user.gid] });
  await new Promise((r) => setTimeout(r, 3000));
  const list = await call('ListEnvironments', {});
  t.deepEqual(
    list.environments.map((e) => [e.key, e.holders]),
    [[held.key, ['slurm-job-1', 'slurm-job-2']]],
    'the unheld one expired, the held one did not',
  );
  const launch = await fx.run([`--image=${fx.images.bare.name}`, '-v', 'true']);
  t.is(launch.code, 0, launch.stderr);
  t.regex(launch.stderr, /environment reused/);

  t.deepEqual(await call('ReleaseEnvironment', { holder: 'slurm-job-1' }), {
    released: true,
    kept: 1,
    mountNamespaces: [],
  });
  t.is((await call('Status', {})).environments, 1);
  const last = await call('ReleaseEnvironment', { holder: 'slurm-job-2' });
  t.true(last.released);
  t.is(last.kept, 0);
  t.is(last.mountNamespaces.length, 1);
  t.true(last.mountNamespaces[0] > 0);
  t.is((await call('Status', {})).environments, 0);
  t.false((await call('ReleaseEnvironment', { holder: 'slurm-job-2' })).released);
});
