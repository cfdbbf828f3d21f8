// Several workers in one Kafka consumer group over a partitioned Debezium topic: they share the
// partitions, and a rebalance in the middle of a stream (a worker added, one killed with -9, one
// stopped, the killed one started again) loses nothing and applies each row's changes in order.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Partitioners } from 'kafkajs';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OrdersEventWriter, orderFor } from '../../bench/debezium-events.js';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { KafkaBroker, kafkaMissing, sharedKafkaBroker } from '../harness/kafka.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { recordResult } from './reliability.js';

const PARTITIONS = 6;
const ROWS = 300;
const CHANGES_PER_ROW = 20;
const SESSION_TIMEOUT_MS = 6_000;

// Against the broker of the Debezium stack (3.9) and the newest release (4.x, classic group protocol):
// kafkajs is unmaintained, so what it does with the broker users deploy today is checked, not assumed.
describe.skipIf(servicesMissing('redis') || kafkaMissing()).each([
  { version: 3 as const, id: 'D4' },
  { version: 4 as const, id: 'D5' },
])('workers in one consumer group, Kafka $version.x', ({ version, id }) => {
  let broker: KafkaBroker;
  let own: KafkaBroker | undefined;
  let redis: Redis;
  let subscriber: Redis;
  const workers: WorkerProcess[] = [];
  beforeAll(async () => {
    broker = version === 3 ? await sharedKafkaBroker() : (own = await KafkaBroker.start({ version: 4 }));
    const server = await sharedRedis();
    redis = new Redis(server.url());
    subscriber = new Redis(server.url());
  }, 240_000);
  afterAll(async () => {
    for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    redis?.disconnect();
    subscriber?.disconnect();
    await own?.destroy();
  });

  it('share the partitions; a rebalance mid-stream (added, killed -9, stopped, restarted) loses nothing and keeps each row in order', { timeout: 300_000 }, async () => {
    const topic = `${uniqueName('g')}.public.orders`;
    const kafka = broker.client('group-test');
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }], waitForLeaders: true });
    await admin.disconnect();

    // Change n of row id is an insert whose sku is s<n>: its key order:<id>:s<n> names the change.
    const prefix = `${uniqueName('k')}:`;
    const channel = `${prefix}applied`;
    const key = (id: number, n: number) => `${prefix}order:${id}:s${n}`;
    for (let id = 1; id <= ROWS; id++) {
      const m = redis.pipeline();
      for (let n = 1; n <= CHANGES_PER_ROW; n++) m.set(key(id, n), 'cached');
      await m.exec();
    }
    // What each batch applied, in the order the workers applied it.
    const firstSeen = new Map<number, number[]>();
    let notifications = 0;
    subscriber.on('message', (_c: string, message: string) => {
      notifications++;
      for (const k of (JSON.parse(message) as { keys: string[] }).keys) {
        const m = /order:(\d+):s(\d+)$/.exec(k);
        if (m === null) continue;
        const seen = firstSeen.get(Number(m[1])) ?? [];
        if (!seen.includes(Number(m[2]))) seen.push(Number(m[2]));
        firstSeen.set(Number(m[1]), seen);
      }
    });
    await subscriber.subscribe(channel);

    const dir = mkdtempSync(join(tmpdir(), 'cdc-group-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'orders.yaml'), 'rules:\n  - table: public.orders\n    invalidate: ["order:{id}:{sku}"]\n');
    const configPath = join(dir, 'config.yaml');
    writeFileSync(
      configPath,
      `source:\n  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n  topics: [${topic}]\n` +
        `  sessionTimeoutMs: ${SESSION_TIMEOUT_MS}\n  tableIdentities: { orders: default }\n` +
        `redis:\n  url: "${(await sharedRedis()).url()}"\n  keyPrefix: "${prefix}"\n  notifyChannel: "${channel}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
    );
    const start = async () => {
      const w = spawnCli(['run', '--config', configPath]);
      workers.push(w);
      await waitFor(() => w.output().includes('joined consumer group'), { timeoutMs: 60_000, message: `worker did not join:\n${w.output()}` });
      return w;
    };
    const joins = (w: WorkerProcess) => w.output().split('\n').filter((l) => l.includes('joined consumer group')).length;

    // Rows are written in rounds (change n of every row, then n + 1), keyed by id as Debezium keys them.
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const writer = new OrdersEventWriter(topic.slice(0, -'.public.orders'.length), 'app');
    let produced = 0;
    const produce = async (n: number) => {
      const messages = [];
      for (let id = 1; id <= ROWS; id++) messages.push({ key: writer.key(id), value: writer.value('c', { ...orderFor(id), sku: `s${n}` }, Date.now()) });
      await producer.send({ topic, messages, acks: -1 });
      produced = n;
    };

    const a = await start();
    for (let n = 1; n <= 4; n++) await produce(n);
    const b = await start(); // a worker added
    for (let n = 5; n <= 8; n++) await produce(n);
    const c = await start();
    for (let n = 9; n <= 11; n++) await produce(n);
    await waitFor(() => redis.exists(key(ROWS, 10)).then((e) => e === 0), { timeoutMs: 60_000, message: 'round 10 applied' });
    a.child.kill('SIGKILL'); // killed: its partitions move once the session times out
    const killedAt = Date.now();
    expect(await a.exited).toBe('SIGKILL');
    for (let n = 12; n <= 14; n++) await produce(n);
    // The killed worker's partitions are consumed again: by b and c after the session timeout.
    const cJoinsBefore = joins(c);
    await waitFor(() => joins(c) > cJoinsBefore, { timeoutMs: 60_000, intervalMs: 50, message: 'the group to rebalance after the kill' });
    const rebalancedSeconds = (Date.now() - killedAt) / 1000;
    b.child.kill('SIGTERM'); // stopped: it leaves the group at once
    expect(await b.exited).toBe(0);
    for (let n = 15; n <= 17; n++) await produce(n);
    const restarted = await start(); // the killed one back
    for (let n = 18; n <= CHANGES_PER_ROW; n++) await produce(n);
    await producer.disconnect();
    expect(produced).toBe(CHANGES_PER_ROW);

    const left = async () => {
      let count = 0;
      for (let id = 1; id <= ROWS; id++) count += await redis.exists(...Array.from({ length: CHANGES_PER_ROW }, (_, i) => key(id, i + 1)));
      return count;
    };
    await waitFor(async () => (await left()) === 0, { timeoutMs: 120_000, intervalMs: 500, message: 'every change applied' });

    // In order per row: the changes of a row first appear in the order they were written (a
    // rebalance may apply some again, never one before an earlier one).
    const outOfOrder = [...firstSeen].filter(([, seen]) => seen.some((n, i) => i > 0 && n < seen[i - 1]!));
    expect(outOfOrder.slice(0, 3)).toEqual([]);
    expect(firstSeen.size).toBe(ROWS);
    // Every worker that ran took part.
    for (const w of [a, b, c, restarted]) expect(joins(w)).toBeGreaterThan(0);
    for (const w of [c, restarted]) {
      w.child.kill('SIGTERM');
      expect(await w.exited).toBe(0);
    }
    // Through every rebalance the log stayed JSON, one object per line (kafkajs' timer warnings included).
    for (const w of [a, b, c, restarted]) {
      const lines = w.output().split('\n').filter((l) => l.trim() !== '');
      expect(lines.filter((l) => !l.startsWith('{'))).toEqual([]);
      expect(w.output()).not.toContain('TimeoutNegativeWarning');
    }
    recordResult({
      id,
      title: `Debezium path: consumer group rebalances mid-stream, Kafka ${version}.x`,
      runs: 4,
      changes: ROWS * CHANGES_PER_ROW,
      lost: 0,
      duplicated: null,
      recoverySeconds: Math.round(rebalancedSeconds * 10) / 10,
      notes:
        `Kafka ${broker.version}, ${PARTITIONS} partitions; workers added (2), killed -9 (1), stopped (1), restarted (1) mid-stream; every row's changes first applied in the order written; ` +
        `recovery = kill -9 to the group rebalanced with source.sessionTimeoutMs ${SESSION_TIMEOUT_MS}; ${notifications} batches applied`,
    });
  });
});
