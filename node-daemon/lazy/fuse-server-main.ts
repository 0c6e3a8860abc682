/**
 * The FUSE server process (spawned and supervised by shifterd, lazy-supervisor.ts): opens the
 * chunk store, mounts the lazy image file system and answers shifterd's requests on the IPC
 * channel. It exits when shifterd goes away; shifterd takes the mount down.
 */
import { existsSync } from 'node:fs';
import { ShifterError, asShifterError, describeError } from '../../common/errors.js';
import { createLogger } from '../../common/logger.js';
import { mungeEncode } from '../../common/munge.js';
import { ChunkSource } from './chunk-source.js';
import { ChunkStore } from './chunk-store.js';
import { mountImages } from './fuse-server.js';
import { LazyImages } from './lazy-images.js';
import type { FuseServerConfig, ServerEvent, ServerReply, ServerRequest } from './server-protocol.js';

const log = createLogger('shifter-lazy');

function send(message: ServerReply | ServerEvent): void {
  process.send?.(message);
}

async function answer(images: LazyImages, store: ChunkStore, r: ServerRequest): Promise<ServerReply> {
  switch (r.op) {
    case 'open': {
      const wholeFile = images.wholeFile(r.id);
      if (wholeFile === undefined) {
        await images.open(r.id, r.indexDigest);
        return { req: r.req, ok: true };
      }
      // The file serves the start; the index, fetched behind it, lets status count the image.
      images.open(r.id, r.indexDigest).catch((e: unknown) => {
        log.debug({ image: r.id, err: describeError(e) }, 'index of a whole image not fetched');
      });
      return { req: r.req, ok: true, wholeFile };
    }
    case 'touch':
      images.wholeFile(r.id);
      return { req: r.req, ok: true };
    case 'stage': {
      const stage =
        r.what === 'profile'
          ? await images.stageProfile(r.id, r.indexDigest)
          : await images.stageAll(r.id, r.indexDigest);
      return { req: r.req, ok: true, stage };
    }
    case 'facts':
      return { req: r.req, ok: true, facts: await images.facts(r.id) };
    case 'status':
      await images.settled();
      return {
        req: r.req,
        ok: true,
        status: { store: store.usage(), images: images.list().map((id) => images.status(id)!) },
      };
  }
}

async function main(): Promise<void> {
  const config = JSON.parse(process.argv[2] ?? '') as FuseServerConfig;
  const store = await ChunkStore.open(config.cacheDir, config.sizeBytes);
  const socket = config.mungeSocket;
  const source = new ChunkSource({
    bases: config.bases,
    caches: config.caches,
    system: config.system,
    log,
    credential:
      socket !== undefined && existsSync(socket) ? () => mungeEncode('', { socket, timeoutMs: 5000 }) : undefined,
  });
  const images = new LazyImages(store, source, log, {
    chunkTimeoutMs: config.chunkTimeoutMs,
    profileWindowMs: config.profileWindowMs,
    prefetchParallel: config.prefetchParallel,
  });
  images.onWhole = (id, file) => send({ whole: id, file });
  process.on('message', (r: ServerRequest) => {
    answer(images, store, r).then(send, (e: unknown) => {
      const err = asShifterError(e, 'IO_ERROR', `lazy image ${'id' in r ? r.id : ''}`);
      send({ req: r.req, ok: false, code: err.code, message: err.message });
    });
  });
  process.on('disconnect', () => process.exit(0));
  await mountImages(config.mountpoint, images, log);
  const usage = store.usage();
  log.info({ mountpoint: config.mountpoint, chunks: usage.chunks, bytes: usage.bytes }, 'lazy image server ready');
  send({ ready: true });
  // The first cold start then finds the node token there instead of waiting for a munge exchange.
  source.warm(AbortSignal.timeout(config.chunkTimeoutMs)).catch((e: unknown) => {
    log.warn({ err: describeError(e) }, 'no node token yet; the first image request asks again');
  });
}

main().catch((e: unknown) => {
  const err = e instanceof ShifterError ? e : new ShifterError('IO_ERROR', describeError(e), e);
  log.error({ err: err.message }, 'lazy image server failed to start');
  send({ ready: false, code: err.code, message: err.message });
  process.exit(1);
});
