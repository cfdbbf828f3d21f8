// The Kafka harness end to end: a KRaft broker, a Connect worker with the Debezium PostgreSQL connector
// on the file's Postgres, and the change events of an insert, update, delete and truncate read back with
// kafkajs. KAFKA_SAMPLES=1 prints one message per operation (the shapes the Debezium source parses).
import { beforeAll, describe, expect, it } from 'vitest';
import type { Consumer, KafkaMessage } from 'kafkajs';
import { ConnectWorker, kafkaMissing, KafkaBroker, residentBytes, sharedConnectWorker, sharedKafkaBroker } from './kafka.js';
import { createTestDatabase, servicesMissing, sharedPostgres, uniqueName } from './services.js';
import { waitFor } from './wait-for.js';

interface Received {
  key: unknown;
  value: unknown;
  offset: string;
}

const showSamples = process.env.KAFKA_SAMPLES === '1' || process.env.KAFKA_SAMPLES === 'true';
const timings: Record<string, number> = {};

function parse(buffer: Buffer | null): unknown {
  return buffer === null ? null : JSON.parse(buffer.toString('utf8'));
}

/** Subscribes from the beginning of `topic` (created first, so the subscription never races it). */
async function collect(broker: KafkaBroker, topic: string): Promise<{ consumer: Consumer; messages: Received[] }> {
  const kafka = broker.client();
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ groupId: uniqueName('group'), maxWaitTimeInMs: 100 });
  const messages: Received[] = [];
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ message }: { message: KafkaMessage }) => {
      messages.push({ key: parse(message.key), value: parse(message.value), offset: message.offset });
    },
  });
  return { consumer, messages };
}

type Envelope = {
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
  ts_ms: number;
};

describe.skipIf(servicesMissing('postgres') || kafkaMissing())('Kafka broker, Connect and Debezium', () => {
  let broker: KafkaBroker;
  let worker: ConnectWorker;
  let database: string;
  let pgPort: number;

  beforeAll(async () => {
    const pg = await sharedPostgres();
    pgPort = pg.port;
    database = (await createTestDatabase('kafka')).name;
    await pg.query(
      `CREATE TABLE public.items (
         id integer PRIMARY KEY,
         name text NOT NULL,
         price numeric(10, 2),
         data bytea,
         created_on date,
         updated_at timestamptz
       )`,
      [],
      database,
    );
    await pg.query('ALTER TABLE public.items REPLICA IDENTITY FULL', [], database);

    let t = Date.now();
    broker = await sharedKafkaBroker();
    timings.brokerStartMs = Date.now() - t;
    t = Date.now();
    worker = await sharedConnectWorker({ postgres: { host: '127.0.0.1', port: pgPort, user: 'postgres', database } });
    timings.connectStartMs = Date.now() - t;
  });

  it('streams insert, update, delete (with a tombstone) and truncate as Debezium envelopes', async () => {
    const pg = await sharedPostgres();
    const prefix = uniqueName('cdc');
    const topic = `${prefix}.public.items`;
    const { consumer, messages } = await collect(broker, topic);
    try {
      const t = Date.now();
      const status = await worker.createPostgresConnector({
        name: prefix,
        slot: uniqueName('slot'),
        publication: uniqueName('pub'),
        tables: ['public.items'],
        topicPrefix: prefix,
        snapshotMode: 'no_data',
        schemasEnable: true,
      });
      timings.connectorStartMs = Date.now() - t;
      expect(status.tasks.map((task) => task.state)).toEqual(['RUNNING']);

      const lsnBefore = (await pg.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', [], database))[0]!.lsn;
      const t2 = Date.now();
      await pg.query(
        `INSERT INTO public.items VALUES (1, 'pen', 12.50, '\\x00ff10', '2024-02-29', '2024-02-29 12:34:56.789012+00')`,
        [],
        database,
      );
      await pg.query(`UPDATE public.items SET name = 'red pen', price = 13.75 WHERE id = 1`, [], database);
      await pg.query('DELETE FROM public.items WHERE id = 1', [], database);
      await pg.query(`INSERT INTO public.items (id, name) VALUES (2, 'ink')`, [], database);
      await pg.query('TRUNCATE public.items', [], database);

      // c, u, d, tombstone, c, t
      await waitFor(() => messages.length >= 6, { timeoutMs: 60_000, intervalMs: 50, message: 'six messages on ' + topic });
      timings.firstSixMessagesMs = Date.now() - t2;
      const values = messages.map((m) => m.value as { schema?: unknown; payload: Envelope } | null);
      const payloads = values.map((v) => v?.payload ?? null);
      expect(payloads.map((p) => p?.op ?? 'tombstone')).toEqual(['c', 'u', 'd', 'tombstone', 'c', 't']);

      const [insert, update, del, , , truncate] = payloads as Envelope[];
      // schemas.enable=true: every value is { schema, payload }, the key too.
      expect(values[0]).toHaveProperty('schema');
      expect(messages[0]!.key).toEqual({ schema: expect.anything(), payload: { id: 1 } });

      expect(insert!.before).toBeNull();
      expect(insert!.after).toEqual({
        id: 1,
        name: 'pen',
        price: '12.50', // decimal.handling.mode=string
        data: 'AP8Q', // binary.handling.mode=base64
        created_on: 19782, // io.debezium.time.Date: days since 1970-01-01
        updated_at: '2024-02-29T12:34:56.789012Z', // io.debezium.time.ZonedTimestamp
      });
      expect(insert!.source).toMatchObject({ connector: 'postgresql', db: database, schema: 'public', table: 'items' });
      // source.lsn is where the change's WAL record starts: at or after the insert position read before it.
      expect(BigInt(insert!.source.lsn as number)).toBeGreaterThanOrEqual(lsnToBigInt(lsnBefore));
      expect(typeof insert!.source.txId).toBe('number');

      // REPLICA IDENTITY FULL: the whole old row.
      expect(update!.before).toMatchObject({ id: 1, name: 'pen', price: '12.50' });
      expect(update!.after).toMatchObject({ id: 1, name: 'red pen', price: '13.75' });
      expect(Number(update!.source.lsn)).toBeGreaterThan(Number(insert!.source.lsn));

      expect(del!.before).toMatchObject({ id: 1, name: 'red pen', data: 'AP8Q' });
      expect(del!.after).toBeNull();
      expect(messages[3]!.value).toBeNull(); // the tombstone: same key, null value
      expect(messages[3]!.key).toEqual(messages[2]!.key);

      expect(truncate!.before).toBeNull();
      expect(truncate!.after).toBeNull();
      expect(truncate!.source).toMatchObject({ schema: 'public', table: 'items' });
      expect(messages[5]!.key).toBeNull();

      if (showSamples) {
        const labels = ['c (schemas.enable=true)', 'u', 'd', 'tombstone', 'c', 't'];
        for (const [i, m] of messages.slice(0, 6).entries()) {
          const shown = i === 0 ? m : { key: m.key, value: (m.value as { payload?: unknown } | null)?.payload ?? null };
          console.log(`--- sample ${labels[i]} ---\n${JSON.stringify(shown, null, 2)}`);
        }
      }
      await worker.deleteConnector(prefix);
    } finally {
      await consumer.disconnect();
    }
  });

  it('sends bare payloads with schemas.enable=false, and an initial snapshot as op "r"', async () => {
    const pg = await sharedPostgres();
    await pg.query(`INSERT INTO public.items (id, name, price) VALUES (10, 'old', 1.5)`, [], database);
    const prefix = uniqueName('plain');
    const topic = `${prefix}.public.items`;
    const { consumer, messages } = await collect(broker, topic);
    try {
      await worker.createPostgresConnector({
        name: prefix,
        slot: uniqueName('slot'),
        publication: uniqueName('pub'),
        tables: ['public.items'],
        topicPrefix: prefix,
        snapshotMode: 'initial',
        schemasEnable: false,
      });
      await pg.query(`UPDATE public.items SET price = 2 WHERE id = 10`, [], database);
      await waitFor(() => messages.length >= 2, { timeoutMs: 60_000, intervalMs: 50, message: 'two messages on ' + topic });
      const [snapshot, update] = messages.map((m) => m.value as Envelope);
      expect(messages[0]!.key).toEqual({ id: 10 });
      expect(snapshot).not.toHaveProperty('schema');
      expect(snapshot).toMatchObject({ op: 'r', before: null, after: { id: 10, name: 'old', price: '1.50' } });
      expect(update).toMatchObject({ op: 'u', before: { price: '1.50' }, after: { price: '2.00' } });
      if (showSamples) {
        console.log(`--- sample r (schemas.enable=false) ---\n${JSON.stringify(messages[0], null, 2)}`);
        console.log(`--- sample u (schemas.enable=false) ---\n${JSON.stringify(messages[1], null, 2)}`);
      }
      await worker.deleteConnector(prefix);
    } finally {
      await consumer.disconnect();
    }
  });

  it('restarts the broker and the worker, and the connector resumes where it was', async () => {
    const pg = await sharedPostgres();
    const prefix = uniqueName('restart');
    const topic = `${prefix}.public.items`;
    const slot = uniqueName('slot');
    await worker.createPostgresConnector({
      name: prefix,
      slot,
      publication: uniqueName('pub'),
      tables: ['public.items'],
      topicPrefix: prefix,
      schemasEnable: false,
    });
    await pg.query(`INSERT INTO public.items (id, name) VALUES (20, 'before')`, [], database);

    let t = Date.now();
    await broker.restart();
    timings.brokerRestartMs = Date.now() - t;
    t = Date.now();
    await worker.restart();
    timings.connectRestartMs = Date.now() - t;
    await pg.query(`INSERT INTO public.items (id, name) VALUES (21, 'after')`, [], database);

    const { consumer, messages } = await collect(broker, topic).catch(async () => await collect(broker, topic));
    try {
      await waitFor(() => messages.some((m) => (m.value as Envelope | null)?.after?.id === 21), {
        timeoutMs: 60_000,
        intervalMs: 50,
        message: 'the row inserted after the restarts',
      });
      const ids = messages.map((m) => (m.value as Envelope | null)?.after?.id);
      expect(ids).toContain(20);
      expect(ids.filter((id) => id === 21)).toHaveLength(1);
    } finally {
      await consumer.disconnect();
    }
    timings.brokerRssMb = Math.round((residentBytes(broker.pid) ?? 0) / 1048576);
    timings.connectRssMb = Math.round((residentBytes(worker.pid) ?? 0) / 1048576);
    console.log(`kafka harness timings: ${JSON.stringify(timings)}`);
    // Two JVM restarts; on a machine's first run each also writes its class data sharing archive.
  }, 180_000);
});

function lsnToBigInt(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}
