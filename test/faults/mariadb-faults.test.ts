// MariaDB through Debezium under a fault: the worker killed with SIGKILL while it drains a backlog, nothing
// lost. And the drain rate of that path next to PostgreSQL through Debezium, both measured in one run on
// a backlog already in Kafka (the worker alone, not the connector).
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker, type ConnectWorker, type KafkaBroker } from '../harness/kafka.js';
import type { MariaDbServer } from '../harness/mariadb.js';
import { createMariaDbTestDatabase, createTestDatabase, servicesMissing, sharedMariaDb, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { recordResult } from './reliability.js';

const ROWS = 20_000;

describe.skipIf(servicesMissing('mariadb', 'postgres', 'redis') || kafkaMissing())('the MariaDB path under faults', () => {
  let broker: KafkaBroker;
  let connect: ConnectWorker;
  let maria: MariaDbServer;
  let redis: Redis;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    broker = await sharedKafkaBroker();
    maria = await sharedMariaDb();
    const pg = await sharedPostgres();
    connect = await sharedConnectWorker({ postgres: { host: '127.0.0.1', port: pg.port, user: 'postgres' } });
    redis = new Redis((await sharedRedis()).url());
  }, 240_000);
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    redis?.disconnect();
  });

  /**
   * A table `items` in a database of `kind`, a Debezium connector on it, and a worker config on its topic.
   * churn(n) commits n single-row inserts; backlog() waits until the topic holds all of them.
   */
  async function setup(kind: 'mariadb' | 'postgres') {
    const topicPrefix = uniqueName(kind === 'mariadb' ? 'mf' : 'pf');
    let topic: string;
    let table: string;
    let churn: (n: number) => Promise<unknown>;
    if (kind === 'mariadb') {
      const db = await createMariaDbTestDatabase('mf');
      await maria.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`, [], db.name);
      await maria.query(
        `CREATE PROCEDURE churn(n int) BEGIN DECLARE i int DEFAULT 1; WHILE i <= n DO INSERT INTO items (id) VALUES (i); SET i = i + 1; END WHILE; END`,
        [],
        db.name,
      );
      await connect.createMariaDbConnector({
        name: uniqueName('conn'),
        server: { host: maria.host, port: maria.port, user: maria.user, password: maria.password },
        databases: [db.name],
        tables: [`${db.name}.items`],
        topicPrefix,
        schemasEnable: true,
      });
      topic = `${topicPrefix}.${db.name}.items`;
      table = `${db.name}.items`;
      // Autocommit: each INSERT of the procedure is a transaction of its own.
      churn = (n) => maria.query(`CALL churn(?)`, [n], db.name);
    } else {
      const pg = await sharedPostgres();
      const db = await createTestDatabase('pf');
      await pg.query(
        `CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
         CREATE PROCEDURE public.churn(n int) LANGUAGE plpgsql AS $$
         BEGIN FOR i IN 1..n LOOP INSERT INTO public.items (id) VALUES (i); COMMIT; END LOOP; END $$;`,
        [],
        db.name,
      );
      await connect.createPostgresConnector({
        name: uniqueName('conn'),
        database: db.name,
        slot: uniqueName('dbz_slot'),
        publication: uniqueName('dbz_pub'),
        tables: ['public.items'],
        topicPrefix,
        schemasEnable: true,
        settings: { 'decimal.handling.mode': 'precise' },
      });
      topic = `${topicPrefix}.public.items`;
      table = 'public.items';
      churn = (n) => pg.query(`CALL public.churn($1)`, [n], db.name);
    }
    const admin = broker.client().admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    const backlog = () =>
      waitFor(async () => Number((await admin.fetchTopicOffsets(topic))[0]!.high) >= ROWS, {
        timeoutMs: 240_000,
        intervalMs: 250,
        message: `${kind}: Debezium did not write the backlog to ${topic}`,
      });
    const prefix = `${uniqueName('k')}:`;
    const dir = mkdtempSync(join(tmpdir(), 'cdc-mf-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'rules.yaml'), `rules:\n  - table: ${table}\n    invalidate: ["item:{id}"]\n`);
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      `source:\n  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n  topics: [${topic}]\n` +
        `redis:\n  url: "${(await sharedRedis()).url()}"\n  keyPrefix: "${prefix}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
    );
    const seed = async () => {
      for (let i = 1; i <= ROWS; i += 5_000) {
        const m = redis.multi();
        for (let j = i; j < Math.min(ROWS + 1, i + 5_000); j++) m.set(`${prefix}item:${j}`, 'x');
        await m.exec();
      }
    };
    const left = async () => {
      let count = 0;
      for (let i = 1; i <= ROWS; i += 5_000) count += await redis.exists(...Array.from({ length: Math.min(5_000, ROWS + 1 - i) }, (_, j) => `${prefix}item:${i + j}`));
      return count;
    };
    const start = async () => {
      const w = spawnCli(['run', '--config', configPath]);
      workers.push(w);
      await waitFor(() => /joined consumer group/.test(w.output()), { timeoutMs: 60_000, message: 'worker did not join its group' });
      return w;
    };
    const close = () => admin.disconnect();
    return { seed, left, churn, backlog, start, close };
  }

  it('loses nothing when the worker is killed -9 while it drains a backlog of MariaDB changes', { timeout: 400_000 }, async () => {
    const t = await setup('mariadb');
    await t.seed();
    await t.churn(ROWS);
    await t.backlog();
    let worker = await t.start();
    await waitFor(async () => (await t.left()) < ROWS - 1_000, { timeoutMs: 60_000, intervalMs: 50, message: 'no progress before the kill' });
    worker.child.kill('SIGKILL');
    expect(await worker.exited).toBe('SIGKILL');
    const killedWith = await t.left();
    expect(killedWith).toBeGreaterThan(0);
    const restartedAt = Date.now();
    worker = await t.start();
    await waitFor(async () => (await t.left()) === 0, {
      timeoutMs: 120_000,
      intervalMs: 100,
      message: `keys left after the kill\n${worker.output().split('\n').slice(-20).join('\n')}`,
    });
    const recoverySeconds = (Date.now() - restartedAt) / 1000;
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    await t.close();
    recordResult({
      id: 'D7',
      title: 'MariaDB path: worker kill -9 while draining a backlog',
      runs: 1,
      changes: ROWS,
      lost: 0,
      duplicated: null,
      recoverySeconds: Math.round(recoverySeconds * 10) / 10,
      notes: `MariaDB 10.11, Debezium 3.0.1's MariaDB connector; ${ROWS} single-row transactions in Kafka, killed with ${killedWith} keys left; recovery is from the restart to every key invalidated`,
    });
  });

  it('drain rate of the MariaDB path next to PostgreSQL through Debezium, in one run', { timeout: 900_000 }, async () => {
    // Alternated, twice each: the first drain of a run also warms the broker and the JIT.
    const measured: Record<'postgres' | 'mariadb', number[]> = { postgres: [], mariadb: [] };
    for (const kind of ['postgres', 'mariadb', 'postgres', 'mariadb'] as const) {
      const t = await setup(kind);
      await t.seed();
      await t.churn(ROWS);
      await t.backlog();
      const worker = await t.start();
      const started = Date.now();
      await waitFor(async () => (await t.left()) === 0, { timeoutMs: 240_000, intervalMs: 50, message: `${kind} did not drain` });
      measured[kind].push(Math.round(ROWS / ((Date.now() - started) / 1000)));
      worker.child.kill('SIGTERM');
      await worker.exited;
      await t.close();
    }
    const best = (kind: 'postgres' | 'mariadb') => Math.max(...measured[kind]);
    recordResult({
      id: 'D8',
      title: 'Drain rate, MariaDB next to PostgreSQL through Debezium',
      runs: 4,
      changes: 4 * ROWS,
      lost: 0,
      duplicated: null,
      recoverySeconds: null,
      notes:
        `a backlog of ${ROWS} single-row transactions already in Kafka, drained by one worker (from joining its group to every key ` +
        `invalidated), alternated: PostgreSQL connector ${measured.postgres.join(' and ')}/s, MariaDB connector ${measured.mariadb.join(' and ')}/s ` +
        `(best ${(best('mariadb') / best('postgres')).toFixed(2)}x)`,
    });
  });
});
