/**
 * Expiry at scale, in-process with the gateway's real routes, store and files (no registry):
 *   node dist/bench/expiry.js [RECORDS] [EXPIRED]     (defaults 100000 and 1000)
 * Fills a fresh SQLite store directly with RECORDS READY images (EXPIRED of them past their
 * expiration, each with its two files in imageDir), then measures
 *   1. autoexpire over the whole store, while a client sends a pull (POST /api/pull of a READY
 *      tag) every 20 ms and records each answer's latency;
 *   2. 1,000 admin `expire` requests, one after another, each removing an image and its files.
 */
import Database from 'better-sqlite3';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createLogger } from '../common/logger.js';
import { gatewayApi } from '../gateway/api/routes.js';
import { createHttpServer } from '../gateway/api/server.js';
import { createAuthenticator } from '../gateway/auth/session.js';
import { parseGatewayConfig } from '../gateway/config/imagemanager.js';
import { PullManager } from '../gateway/pull/manager.js';
import { SqliteImageStore } from '../gateway/store/sqlite-store.js';
import { completedFields, newPullRecord, type ImageRecord, type RecordKey } from '../gateway/store/record.js';

const ROOT = { authentication: 'good:root:root::0:0' };
const ALICE = { authentication: 'good:alice:users::1000:100' };

const idOf = (i: number) => i.toString(16).padStart(64, '0');
const keyOf = (i: number) => `k${i.toString().padStart(9, '0')}`;

/** Writes `count` READY records straight into the store's tables (the schema the store creates). */
async function fill(path: string, count: number, expiredUpTo: number, now: number): Promise<void> {
  await new SqliteImageStore(path).close();
  const db = new Database(path);
  const image = db.prepare(
    `INSERT INTO images (key, system, itype, pulltag, status, id, last_pull, expiration, doc)
     VALUES (?, 'sys', 'docker', ?, 'READY', ?, ?, ?, ?)`,
  );
  const tag = db.prepare("INSERT INTO tags (system, itype, tag, key, seq) VALUES ('sys', 'docker', ?, ?, ?)");
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const key = keyOf(i) as RecordKey;
      const pulltag = `bench/img${i}:1`;
      const expiration = i < expiredUpTo ? now - 60 : now + 86_400;
      const pull = newPullRecord(key, {
        system: 'sys',
        itype: 'docker',
        pulltag,
        requesterUid: null,
        userACL: [],
        groupACL: [],
        format: 'squashfs',
        credentialed: false,
        now,
      });
      const rec: ImageRecord = {
        ...pull,
        ...completedFields(
          {
            id: idOf(i),
            format: 'squashfs',
            ENV: ['PATH=/bin'],
            ENTRY: null,
            CMD: null,
            WORKDIR: null,
            LABELS: {},
            USER: null,
            userACL: [],
            groupACL: [],
            private: false,
            now,
            expiration,
            status_message: 'Image ready',
          },
          pull,
          null,
        ),
      };
      const { key: _k, tag: _t, ...doc } = rec;
      image.run(key, pulltag, idOf(i), now, expiration, JSON.stringify(doc));
      tag.run(pulltag, key, i + 1);
    }
  })();
  db.close();
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function main(): Promise<void> {
  const records = Number(process.argv[2] ?? 100_000);
  const expired = Number(process.argv[3] ?? 1000);
  const dir = await mkdtemp(join(tmpdir(), 'bench-expiry-'));
  try {
    const imageDir = join(dir, 'images');
    await mkdir(imageDir, { recursive: true });
    const now = Date.now() / 1000;
    let t0 = performance.now();
    // 1,000 more than EXPIRED have files: those are the ones the timed `expire` requests remove.
    await fill(join(dir, 'gateway.sqlite'), records, expired, now);
    for (let i = 0; i < expired + 1000; i++) {
      await writeFile(join(imageDir, `${idOf(i)}.squashfs`), 'image');
      await writeFile(join(imageDir, `${idOf(i)}.meta`), 'FORMAT: squashfs\n');
    }
    console.log(`filled ${records} records (${expired} expired) in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

    const { config } = parseGatewayConfig({
      CacheDirectory: join(dir, 'cache'),
      ExpandDirectory: join(dir, 'expand'),
      MetadataStore: join(dir, 'gateway.sqlite'),
      Authentication: 'mock',
      ImageExpirationTimeout: '1:00:00:00',
      PullUpdateTimeout: 86_400,
      DefaultImageLocation: '127.0.0.1:9',
      Locations: { '127.0.0.1:9': { url: 'http://127.0.0.1:9' } },
      Platforms: { sys: { accesstype: 'local', local: { imageDir }, admins: ['root'] } },
    });
    const log = createLogger('bench', 'silent');
    const store = new SqliteImageStore(config.metadataStore);
    const manager = new PullManager(store, config, log);
    const app = createHttpServer(config.http, log);
    const auth = createAuthenticator('mock');
    await app.register(gatewayApi, { config, store, manager, auth, log });
    await app.ready();

    let n = records - 1;
    let done = false;
    const probe = async (latencies: number[], stop: () => boolean) => {
      while (!stop()) {
        const start = performance.now();
        const r = await app.inject({ method: 'POST', url: `/api/pull/sys/docker/bench/img${n--}:1/`, headers: ALICE });
        if (r.statusCode !== 200) throw new Error(`pull answered ${r.statusCode}: ${r.body}`);
        latencies.push(performance.now() - start);
        await new Promise((res) => setTimeout(res, 20));
      }
    };
    const quiet: number[] = [];
    await probe(quiet, () => quiet.length >= 200);
    quiet.sort((a, b) => a - b);
    console.log(
      `pull latency with nothing else running: p50 ${percentile(quiet, 50).toFixed(1)} ms, ` +
        `p99 ${percentile(quiet, 99).toFixed(1)} ms, max ${quiet.at(-1)?.toFixed(1)} ms`,
    );
    const latencies: number[] = [];
    const during = probe(latencies, () => done);
    t0 = performance.now();
    const auto = await app.inject({ method: 'GET', url: '/api/autoexpire/sys/', headers: ROOT });
    const autoSeconds = (performance.now() - t0) / 1000;
    done = true;
    await during;
    const count = (JSON.parse(auto.body) as { status: string[] }).status.length;
    latencies.sort((a, b) => a - b);
    console.log(
      `autoexpire over ${records} records: ${count} expired in ${autoSeconds.toFixed(2)} s; ` +
        `${latencies.length} pulls answered meanwhile, latency p50 ${percentile(latencies, 50).toFixed(1)} ms, ` +
        `p99 ${percentile(latencies, 99).toFixed(1)} ms, max ${latencies.at(-1)?.toFixed(1)} ms`,
    );

    t0 = performance.now();
    for (let i = expired; i < expired + 1000; i++) {
      const r = await app.inject({ method: 'POST', url: `/api/expire/sys/docker/bench/img${i}:1/`, headers: ROOT });
      if (r.statusCode !== 200) throw new Error(`expire answered ${r.statusCode}: ${r.body}`);
    }
    console.log(`1000 expire requests (files removed) in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    await app.close();
    await manager.stop();
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
