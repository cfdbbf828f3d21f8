// The Debezium path under faults: the worker killed with SIGKILL mid-stream, the Kafka broker restarted
// mid-stream; nothing lost either way. And its throughput next to the Postgres path's, in one run.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker, type ConnectWorker, type KafkaBroker } from '../harness/kafka.js';
import { createTestDatabase, servicesMissing, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { recordResult } from './reliability.js';

const ROWS = 20_000;

describe.skipIf(servicesMissing('postgres', 'redis') || kafkaMissing())('the Debezium path under faults', () => {
  let broker: KafkaBroker;
  let connect: ConnectWorker;
  let redis: Redis;
  const workers: WorkerProcess[] = [];

  beforeAll(async () => {
    broker = await sharedKafkaBroker();
    const pg = await sharedPostgres();
    connect = await sharedConnectWorker({ postgres: { host: '127.0.0.1', port: pg.port, user: 'postgres' } });
    redis = new Redis((await sharedRedis()).url());
  }, 240_000);
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    redis?.disconnect();
  });

  /** A database, a Debezium connector on it, and a config for a worker on the connector's topic. */
  async function setup(kind: 'debezium' | 'postgres') {
    const pg = await sharedPostgres();
    const db = await createTestDatabase('dbzf');
    await pg.query(
      `CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
       CREATE PROCEDURE public.churn(first int, n int) LANGUAGE plpgsql AS $$
       BEGIN FOR i IN first..first + n - 1 LOOP INSERT INTO public.items (id) VALUES (i); COMMIT; END LOOP; END $$;`,
      [],
      db.name,
    );
    const topicPrefix = uniqueName('f');
    const topic = `${topicPrefix}.public.items`;
    const connector = uniqueName('conn');
    if (kind === 'debezium') {
      await connect.createPostgresConnector({
        name: connector,
        database: db.name,
        slot: uniqueName('dbz_slot'),
        publication: uniqueName('dbz_pub'),
        tables: ['public.items'],
        topicPrefix,
        schemasEnable: false,
      });
      const admin = broker.client().admin();
      await admin.connect();
      await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
      await admin.disconnect();
    }
    const prefix = `${uniqueName('k')}:`;
    const dir = mkdtempSync(join(tmpdir(), 'cdc-dbzf-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'rules.yaml'), 'rules:\n  - table: public.items\n    invalidate: ["item:{id}"]\n');
    const source =
      kind === 'debezium'
        ? `source:\n  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n  topics: [${topic}]\n`
        : `source:\n  kind: postgres\n  url: "${db.url}"\n  slot: ${uniqueName('slot')}\n  publication: ${uniqueName('pub')}\n`;
    const configPath = join(dir, 'config.yaml');
    writeFileSync(configPath, `${source}redis:\n  url: "${(await sharedRedis()).url()}"\n  keyPrefix: "${prefix}"\nmappings: ./mappings\nhttp:\n  port: 0\n`);
    const seed = async (from: number, n: number) => {
      for (let i = from; i < from + n; i += 5_000) {
        const m = redis.multi();
        for (let j = i; j < Math.min(from + n, i + 5_000); j++) m.set(`${prefix}item:${j}`, 'x');
        await m.exec();
      }
    };
    const left = async (from: number, n: number) => {
      let count = 0;
      for (let i = from; i < from + n; i += 5_000) {
        const keys = Array.from({ length: Math.min(5_000, from + n - i) }, (_, j) => `${prefix}item:${i + j}`);
        count += await redis.exists(...keys);
      }
      return count;
    };
    const churn = (from: number, n: number) => pg.query(`CALL public.churn($1, $2)`, [from, n], db.name);
    const start = async () => {
      const w = spawnCli(['run', '--config', configPath]);
      workers.push(w);
      await waitFor(() => /joined consumer group|replication started/.test(w.output()), { timeoutMs: 60_000, message: 'worker did not start' });
      return w;
    };
    /** The connector's state, for a failure message: a task that failed stops the stream upstream of the worker. */
    const connectorState = async () =>
      kind === 'debezium' ? JSON.stringify(await connect.connectorStatus(connector).catch((err: unknown) => String(err))) : 'none';
    return { seed, left, churn, start, connectorState };
  }

  it('loses nothing when the worker is killed -9 mid-stream, or the broker restarts mid-stream', { timeout: 300_000 }, async () => {
    const t = await setup('debezium');
    await t.seed(1, ROWS);
    let worker = await t.start();
    // Each wait names its phase and shows the worker's last lines when it fails; together they fit
    // in the test's timeout, so a hang reports where it was.
    const phase = async (condition: () => Promise<boolean>, timeoutMs: number, message: string, intervalMs = 250) =>
      waitFor(condition, { timeoutMs, intervalMs, message }).catch(async (err: unknown) => {
        throw new Error(
          `${err instanceof Error ? err.message : String(err)}\n--- connector: ${await t.connectorState()}\n` +
            `--- the worker's last lines ---\n${worker.output().split('\n').slice(-25).join('\n')}`,
        );
      });
    // 1. kill -9 of the worker while it applies.
    await t.churn(1, ROWS / 2);
    await phase(async () => (await t.left(1, ROWS / 2)) < ROWS / 2 - 500, 60_000, 'no progress before the kill');
    worker.child.kill('SIGKILL');
    expect(await worker.exited).toBe('SIGKILL');
    const killedWith = await t.left(1, ROWS / 2);
    worker = await t.start();
    await phase(async () => (await t.left(1, ROWS / 2)) === 0, 80_000, 'keys left after the kill');
    // 2. The broker restarts while changes flow.
    const churning = t.churn(ROWS / 2 + 1, ROWS / 2);
    await phase(async () => (await t.left(ROWS / 2 + 1, ROWS / 2)) < ROWS / 2 - 500, 60_000, 'no progress before the broker restart');
    const restartedAt = Date.now();
    await broker.restart();
    await churning;
    await phase(async () => (await t.left(ROWS / 2 + 1, ROWS / 2)) === 0, 80_000, 'keys left after the broker restart');
    const recoverySeconds = (Date.now() - restartedAt) / 1000;
    expect(worker.child.exitCode).toBeNull();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    recordResult({
      id: 'D2',
      title: 'Debezium path: worker kill -9 and broker restart mid-stream',
      runs: 2,
      changes: ROWS,
      lost: 0,
      duplicated: null,
      recoverySeconds: Math.round(recoverySeconds * 10) / 10,
      notes: `killed with ${killedWith} of ${ROWS / 2} keys left; recovery is from the broker restart to every key invalidated`,
    });
  });

  it('throughput of the Debezium path next to the Postgres path, in one run', { timeout: 300_000 }, async () => {
    const measured: Record<string, number> = {};
    for (const kind of ['postgres', 'debezium'] as const) {
      const t = await setup(kind);
      await t.seed(1, ROWS);
      const worker = await t.start();
      const started = Date.now();
      await t.churn(1, ROWS);
      await waitFor(async () => (await t.left(1, ROWS)) === 0, { timeoutMs: 240_000, intervalMs: 100, message: `${kind} did not finish` });
      measured[kind] = ROWS / ((Date.now() - started) / 1000);
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    const ratio = measured['debezium']! / measured['postgres']!;
    recordResult({
      id: 'D3',
      title: 'Throughput, Debezium path next to the Postgres path',
      runs: 1,
      changes: 2 * ROWS,
      lost: 0,
      duplicated: null,
      recoverySeconds: null,
      notes: `${ROWS} single-row transactions written and applied: postgres ${Math.round(measured['postgres']!)}/s, debezium ${Math.round(measured['debezium']!)}/s (${ratio.toFixed(2)}x); includes writing them`,
    });
  });
});
