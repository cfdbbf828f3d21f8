import { Cluster } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { keySlot } from '../../src/lib/cluster-slot.js';
import { PostgresServer } from '../harness/postgres.js';
import { RedisCluster } from '../harness/redis-cluster.js';
import { servicesMissing, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { metricValue } from './binary-worker.js';
import { httpGet, killWorker, logLines, startWorker, writeFaultConfig, type RunningWorker } from './fault-kit.js';
import { recordResult } from './reliability.js';

/**
 * Scenario 12: the built binary, redis.cluster pointed at a real Redis Cluster (3 masters, 3
 * replicas, cluster-node-timeout 1 s) and redis.waitReplicas 1, drains a stream of updates while one
 * slot is migrated key by key, a master is failed over (CLUSTER FAILOVER), and another master is
 * killed with -9 (its replica takes over, and has no replica to WAIT on until the killed node is
 * back as one). Every key of every committed row must end up deleted, and the batches the kill
 * interrupted must show as retries in /metrics.
 */
let pgServer: PostgresServer;
let cluster: RedisCluster;
let redis: Cluster;
beforeAll(async () => {
  if (servicesMissing('postgres', 'redis-binaries')) return;
  [pgServer, cluster] = await Promise.all([PostgresServer.start(), RedisCluster.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 })]);
  redis = new Cluster(cluster.seeds().map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })), { redisOptions: { maxRetriesPerRequest: 3 } });
  redis.on('error', () => undefined);
}, 120_000);
afterAll(async () => {
  redis?.disconnect();
  await cluster?.destroy();
  await pgServer?.destroy();
});

let worker: RunningWorker | undefined;
afterEach(async () => {
  await killWorker(worker);
  worker = undefined;
});

const ROWS = 3_000;
const PER_TXN = 20;

describe.skipIf(servicesMissing('postgres', 'redis-binaries'))('redis cluster under the worker', () => {
  it('a drain through a slot migration, a failover and a master killed with -9 loses nothing', async () => {
    const url = await pgServer.createDatabase(uniqueName('db'));
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query('CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)');
      await client.query(`INSERT INTO items (id) SELECT g FROM generate_series(1, ${ROWS}) g`);
      const prefix = `${uniqueName('k')}:`;
      const config = writeFaultConfig({
        url,
        slot: uniqueName('slot'),
        publication: uniqueName('pub'),
        redisUrl: '',
        redisCluster: cluster.seeds(),
        redisExtra: '  waitReplicas: 1\n  waitTimeoutMs: 2000\n',
        prefix,
        rules: '  - table: items\n    invalidate: ["item:{id}"]\n',
      });
      worker = await startWorker(config);
      await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'replication to start' });
      const key = (id: number) => `${prefix}item:${id}`;
      for (let id = 1; id <= ROWS; id += 100) {
        await Promise.all(Array.from({ length: 100 }, (_, i) => redis.set(key(id + i), 'cached')));
      }

      const txns = ROWS / PER_TXN;
      let committed = 0;
      const writer = (async () => {
        for (let t = 0; t < txns; t++) {
          await client.query('UPDATE items SET v = v + 1 WHERE id BETWEEN $1 AND $2', [t * PER_TXN + 1, (t + 1) * PER_TXN]);
          committed = t + 1;
          await new Promise((r) => setTimeout(r, 25));
        }
      })();
      const until = (n: number) => waitFor(() => committed >= n, { timeoutMs: 120_000, intervalMs: 10, message: `${n} transactions` });
      let killedAt = 0;
      const faults = (async () => {
        await until(20);
        // A slot holding keys of rows updated later moves to another master, key by key.
        const slot = keySlot(key(ROWS - 5));
        const owner = await cluster.ownerOf(slot);
        const target = (await cluster.masters()).find((m) => m.node !== owner)!.node;
        await cluster.migrateSlot(slot, target, () => new Promise((r) => setTimeout(r, 5)));
        await until(60);
        await cluster.failover((await cluster.masters())[0]!.node);
        await until(100);
        const victim = (await cluster.masters())[1]!.node;
        await victim.server.kill();
        killedAt = Date.now();
        await new Promise((r) => setTimeout(r, 4_000));
        await victim.server.restart();
      })();
      await Promise.all([writer, faults]);

      const remaining = async () => {
        let n = 0;
        for (let id = 1; id <= ROWS; id += 100) {
          n += (await Promise.all(Array.from({ length: 100 }, (_, i) => redis.exists(key(id + i))))).reduce((a, b) => a + b, 0);
        }
        return n;
      };
      await waitFor(async () => (await remaining()) === 0, { timeoutMs: 90_000, intervalMs: 500, message: 'every key to be deleted' });
      const recoverySeconds = (Date.now() - killedAt) / 1000;
      const metrics = (await httpGet(worker.port, '/metrics')).body as string;
      const retries = metricValue(metrics, 'cdc_invalidator_retries_total');
      expect(retries).toBeGreaterThan(0);
      expect(logLines(worker, 'redis apply failed; retrying').length).toBeGreaterThan(0);
      recordResult({
        id: '12',
        title: 'Redis Cluster: slot migration, failover and a master killed mid-stream',
        runs: 3,
        changes: ROWS,
        lost: 0,
        duplicated: null,
        recoverySeconds: Math.round(recoverySeconds * 10) / 10,
        notes: `redis.cluster with 3 masters + 3 replicas, waitReplicas 1; ${retries} batch retries counted in /metrics`,
      });
    } finally {
      await client.end();
    }
  }, 240_000);
});
