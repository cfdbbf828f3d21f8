// The servers a bench starts for itself (PostgreSQL, Redis, a client of each), and what it does at
// the end, also after a failure.
import { rmSync } from 'node:fs';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { OrphanGuard } from '../test/harness/orphan-guard.js';
import { PostgresServer } from '../test/harness/postgres.js';
import { RedisServer } from '../test/harness/redis.js';

/** Filled in as each comes up, so that tearDown removes whatever did, even after a failed start. */
export interface BenchServers {
  postgres?: PostgresServer;
  redisServer?: RedisServer;
  db?: pg.Client;
  redis?: Redis;
}

/**
 * PostgreSQL (with `settings`) holding the database `database`, and Redis with keyspace events on
 * (the latency samples listen for deletions); a client connected to each, and their versions.
 */
export async function startServers(into: BenchServers, database: string, settings: Record<string, string | number>) {
  [into.postgres, into.redisServer] = await Promise.all([PostgresServer.start({ settings }), RedisServer.start({ args: ['--notify-keyspace-events', 'Kg'] })]);
  const url = await into.postgres.createDatabase(database);
  const redisUrl = into.redisServer.url();
  const db = new pg.Client({ connectionString: url });
  into.db = db;
  await db.connect();
  const redis = new Redis(redisUrl);
  into.redis = redis;
  const pgVersion = (await db.query<{ v: string }>("SELECT current_setting('server_version') AS v")).rows[0]!.v;
  const redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? '?';
  return { postgres: into.postgres, redisServer: into.redisServer, db, redis, url, redisUrl, pgVersion, redisVersion };
}

export interface TearDownOptions {
  servers: BenchServers;
  /** Slots whose names match this LIKE pattern are dropped (those still in use cannot be). */
  slotPattern: string;
  guard: OrphanGuard;
  dir: string;
  say: (text: string) => void;
}

/** Drops the bench's slots, closes its clients, removes its servers, its watcher and its temp dir. */
export async function tearDown(o: TearDownOptions): Promise<void> {
  const { db, redis, postgres, redisServer } = o.servers;
  if (db !== undefined) {
    await db
      .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active', [o.slotPattern])
      .catch((err: Error) => o.say(`dropping slots failed: ${err.message}`));
    await db.end().catch(() => undefined);
  }
  redis?.disconnect();
  await Promise.allSettled([postgres?.destroy(), redisServer?.destroy()]);
  o.guard.release();
  rmSync(o.dir, { recursive: true, force: true });
}
