/**
 * A run that never cleans up, for the reaping test (not a test file itself): makes a 2-node cluster
 * whose shifterds use the gateway at argv[2] (munged socket argv[3]), starts image argv[4] on both
 * (so FUSE mounts, loop devices and FUSE servers exist), prints the run's name, directory and
 * namespace inodes as one JSON line, then waits to be killed with SIGKILL: no cleanup of any kind runs.
 */
import { Cluster, netnsInode } from '../helpers/cluster.js';
import { ensureTestUser } from '../node-daemon/runtime-fixture.js';

const [gateway, mungeSocket, image] = process.argv.slice(2);
if (!gateway || !mungeSocket || !image) {
  process.stderr.write('usage: crashing-run.js GATEWAY_URL MUNGE_SOCKET IMAGE\n');
  process.exit(2);
}
const cluster = await Cluster.create(2);
await cluster.startDaemons((n) => [
  `imageGateway=${gateway}`,
  'system=testsys',
  `mungeSocketPath=${mungeSocket}`,
  `lazyImageCache=${n.cacheDir}`,
  'lazyImageCacheSize=1g',
  'lazyChunkTimeout=60',
]);
const user = ensureTestUser();
for (const r of await Promise.all(cluster.nodes.map((n) => cluster.launch(n, user, [`--image=${image}`, 'true'])))) {
  if (r.code !== 0) throw new Error(`the launch exited ${r.code}: ${r.stderr}`);
}
const inodes = cluster.nodes.map((n) => netnsInode(n.netns));
process.stdout.write(JSON.stringify({ run: cluster.name, dir: cluster.dir, inodes }) + '\n');
setInterval(() => undefined, 60_000);
