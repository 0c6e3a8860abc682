/**
 * shifterd-cache: the node's lazy image cache, for admins (root: it talks to shifterd's admin socket).
 *   shifterd-cache [--admin-socket PATH] status        images, bytes cached vs total, hits/misses
 *   shifterd-cache [--admin-socket PATH] stage IMAGE   fetch every chunk of IMAGE now (before a job)
 *   shifterd-cache [--admin-socket PATH] stage --profile IMAGE
 *                                  fetch what a start of IMAGE reads first: superblock, metadata tables
 *                                  and the chunks of its recorded prefetch profile (job-start fan-out:
 *                                  run it on every node of an allocation before the job's ranks start)
 * IMAGE is a tag or id:<id>, resolved as shifter resolves --image.
 * Exit codes: 0 ok, 1 the request failed, 2 bad arguments.
 */
import * as grpc from '@grpc/grpc-js';
import { Command, CommanderError } from 'commander';
import { VERSION_LINE } from '../../common/version.js';
import { loadShifterdProto, shifterdServiceClient } from '../admin-server.js';

const DEFAULT_ADMIN_SOCKET = '/run/shifter/shifterd-admin.sock';

interface CachedImage {
  imageId: string;
  imageBytes: number;
  cachedBytes: number;
  chunks: number;
  cachedChunks: number;
  hits: number;
  misses: number;
  whole: boolean;
}

interface StagedImage extends CachedImage {
  fetchedChunks: number;
  fetchedBytes: number;
  stageSeconds: number;
  profileRecorded: boolean;
  profileChunks: number;
}

interface CacheStatus {
  cacheDir: string;
  storeBytes: number;
  storeLimitBytes: number;
  storeChunks: number;
  storeWholeImages: number;
  images: CachedImage[];
  serverRestarts: number;
}

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

export function formatImage(i: CachedImage): string {
  const pct = i.imageBytes === 0 ? 100 : (100 * i.cachedBytes) / i.imageBytes;
  return (
    `${i.imageId.slice(0, 12)}  ${mib(i.cachedBytes)} of ${mib(i.imageBytes)} cached (${pct.toFixed(0)}%, ` +
    `${i.cachedChunks}/${i.chunks} chunks)  hits ${i.hits}  misses ${i.misses}` +
    (i.whole ? '  whole: one local file, read without FUSE' : '')
  );
}

export function formatStatus(s: CacheStatus): string {
  const lines = [
    `chunk store ${s.cacheDir}: ${mib(s.storeBytes)} of ${mib(s.storeLimitBytes)} in ${s.storeChunks} chunks` +
      `${s.storeWholeImages > 0 ? ` and ${s.storeWholeImages} whole images` : ''}; ` +
      `server restarts ${s.serverRestarts}`,
    ...s.images.map(formatImage),
  ];
  if (s.images.length === 0) lines.push('no image opened since the lazy image server started');
  return lines.join('\n');
}

/** What a stage fetched, then the image's cache line. */
export function formatStage(s: StagedImage, profile: boolean): string {
  const fetched = `fetched ${s.fetchedChunks} chunks (${mib(s.fetchedBytes)}) in ${s.stageSeconds.toFixed(2)} s`;
  const what = !profile
    ? `every chunk of image ${s.imageId} staged`
    : s.profileRecorded
      ? `image ${s.imageId}: its prefetch profile (${s.profileChunks} chunks), superblock and metadata tables staged`
      : `image ${s.imageId} has no recorded prefetch profile yet: staged its superblock and metadata tables only ` +
        '(its next cold start records one)';
  return `${what}: ${fetched}\n${formatImage(s)}`;
}

function call<T>(socket: string, method: string, request: object): Promise<T> {
  const Client = shifterdServiceClient(loadShifterdProto());
  const client = new Client(`unix://${socket}`, grpc.credentials.createInsecure());
  type Unary = (
    this: grpc.Client,
    req: object,
    options: grpc.CallOptions,
    cb: (err: grpc.ServiceError | null, res: T) => void,
  ) => void;
  const fn = (client as unknown as Record<string, Unary>)[method];
  return new Promise<T>((resolve, reject) => {
    fn.call(client, request, { deadline: Date.now() + 3_600_000 }, (err, res) => {
      client.close();
      if (err) reject(new Error(err.details || err.message));
      else resolve(res);
    });
  });
}

async function main(): Promise<void> {
  const program = new Command('shifterd-cache')
    .description("The node's lazy image cache (talks to shifterd's admin socket; root only)")
    .version(VERSION_LINE, '--version', 'print the version and exit')
    .option('--admin-socket <path>', "shifterd's admin socket", DEFAULT_ADMIN_SOCKET)
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s.replace(/^error:/, 'shifterd-cache:')) });
  program
    .command('status')
    .description('images in the cache, bytes cached vs total, hits and misses (reads that reached the FUSE server)')
    .action(async () => {
      const s = await call<CacheStatus>(program.opts<{ adminSocket: string }>().adminSocket, 'CacheStatus', {});
      process.stdout.write(formatStatus(s) + '\n');
    });
  program
    .command('stage <image>')
    .description('fetch every chunk of an image (tag or id:<id>) into the cache now')
    .option('--profile', "only what a start reads first: superblock, metadata tables, the recorded profile's chunks")
    .action(async (image: string, o: { profile?: boolean }) => {
      const profile = o.profile === true;
      const what = profile ? 'STAGE_PROFILE' : 'STAGE_ALL';
      const socket = program.opts<{ adminSocket: string }>().adminSocket;
      const s = await call<StagedImage>(socket, 'StageImage', { image, what });
      process.stdout.write(formatStage(s, profile) + '\n');
    });
  await program.parseAsync(process.argv);
}

main().catch((e: unknown) => {
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  process.stderr.write(`shifterd-cache: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
