import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PostgresServer } from '../harness/postgres.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { httpGet, killWorker, startWorker, writeFaultConfig, type RunningWorker } from './fault-kit.js';

/**
 * Sharding by tables (docs/scaling.md): two workers, each with its own slot, publication and
 * mappings over disjoint tables, both active at once, each invalidating its own tables' keys only.
 */
let pgServer: PostgresServer;
let redisServer: RedisServer;
beforeAll(async () => {
  if (servicesMissing('postgres', 'redis')) return;
  [pgServer, redisServer] = await Promise.all([PostgresServer.start(), RedisServer.start()]);
});
afterAll(async () => {
  await redisServer?.destroy();
  await pgServer?.destroy();
});
const workers: RunningWorker[] = [];
afterEach(async () => {
  for (const w of workers.splice(0)) await killWorker(w);
});

describe.skipIf(servicesMissing('postgres', 'redis'))('two workers over disjoint tables', () => {
  it('each streams its own slot and publication, both active, each table invalidated by its worker', async () => {
    const db = uniqueName('db');
    const url = await pgServer.createDatabase(db);
    await pgServer.query('CREATE TABLE orders (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); CREATE TABLE users (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)', [], db);
    const prefix = `${uniqueName('k')}:`;
    const shards = [
      { table: 'orders', slot: uniqueName('slot_orders'), publication: uniqueName('pub_orders') },
      { table: 'users', slot: uniqueName('slot_users'), publication: uniqueName('pub_users') },
    ];
    for (const shard of shards) {
      const w = await startWorker(
        writeFaultConfig({
          url,
          slot: shard.slot,
          publication: shard.publication,
          redisUrl: redisServer.url(),
          prefix,
          rules: `  - table: ${shard.table}\n    invalidate: ["${shard.table}:{id}"]\n`,
        }),
      );
      workers.push(w);
      await waitFor(() => w.output().includes('replication started'), { timeoutMs: 30_000, message: `the ${shard.table} worker to stream` });
    }
    // Each publication holds its worker's table only.
    for (const shard of shards) {
      const rows = await pgServer.query<{ tablename: string }>('SELECT tablename FROM pg_publication_tables WHERE pubname = $1', [shard.publication], db);
      expect(rows.map((r) => r.tablename)).toEqual([shard.table]);
    }
    for (const w of workers) expect((await httpGet(w.port, '/readyz')).body).toMatchObject({ ready: true, role: 'active' });

    const redis = new Redis(redisServer.url());
    try {
      const ids = Array.from({ length: 50 }, (_, i) => i + 1);
      for (const table of ['orders', 'users']) for (const id of ids) await redis.set(`${prefix}${table}:${id}`, 'cached');
      await pgServer.query(`INSERT INTO orders (id) SELECT g FROM generate_series(1, 50) g; INSERT INTO users (id) SELECT g FROM generate_series(1, 50) g`, [], db);
      const left = async () => {
        let n = 0;
        for (const table of ['orders', 'users']) n += await redis.exists(...ids.map((id) => `${prefix}${table}:${id}`));
        return n;
      };
      await waitFor(async () => (await left()) === 0, { timeoutMs: 30_000, message: 'both tables invalidated' });
      // Each worker applied its own table's changes, and only those.
      const counts = await Promise.all(workers.map(async (w) => (await httpGet(w.port, '/status')).body.counts.changes as number));
      expect(counts).toEqual([50, 50]);
    } finally {
      redis.disconnect();
    }
  }, 120_000);
});
