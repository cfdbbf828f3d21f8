// The MariaDB harness end to end: a server that survives kill -9 with its data and writes a row-based
// binary log, and Debezium's MariaDB connector on it, in a Connect worker on the file's broker, whose
// events for an insert, update, delete and truncate (and a row of many column types) are read back with
// kafkajs. KAFKA_SAMPLES=1 prints one message of each kind; MARIADB_FIXTURES=1 (re)writes them, verbatim,
// to test/fixtures/debezium-mariadb/ for the unit tests.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Consumer, KafkaMessage } from 'kafkajs';
import { beforeAll, describe, expect, it } from 'vitest';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker, type ConnectWorker, type KafkaBroker } from './kafka.js';
import type { MariaDbServer } from './mariadb.js';
import { createMariaDbTestDatabase, servicesMissing, sharedMariaDb, uniqueName } from './services.js';
import { waitFor } from './wait-for.js';

const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'debezium-mariadb');
const isSet = (value: string | undefined) => value === '1' || value === 'true';
const showSamples = isSet(process.env.KAFKA_SAMPLES);
const writeFixtures = isSet(process.env.MARIADB_FIXTURES);

interface Received {
  key: unknown;
  value: unknown;
  /** The value's bytes as sent: the fixtures keep them verbatim (JSON.parse would round ts_ns). */
  raw: string | null;
}

type Envelope = {
  op: string;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  source: Record<string, unknown>;
};

function parse(buffer: Buffer | null): unknown {
  return buffer === null ? null : JSON.parse(buffer.toString('utf8'));
}

/** Subscribes from the beginning of each topic (created first, so the subscription never races it). */
async function collect(broker: KafkaBroker, topics: string[]): Promise<{ consumer: Consumer; messages: Map<string, Received[]> }> {
  const kafka = broker.client();
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1, replicationFactor: 1 })), waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const consumer = kafka.consumer({ groupId: uniqueName('group'), maxWaitTimeInMs: 100 });
  const messages = new Map<string, Received[]>(topics.map((topic) => [topic, []]));
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    eachMessage: async ({ topic, message }: { topic: string; message: KafkaMessage }) => {
      messages.get(topic)?.push({
        key: parse(message.key),
        value: parse(message.value),
        raw: message.value === null ? null : message.value.toString('utf8'),
      });
    },
  });
  return { consumer, messages };
}

function payloadOf(message: Received): Envelope | null {
  return (message.value as { payload?: Envelope } | null)?.payload ?? null;
}

function sample(label: string, message: Received): void {
  if (showSamples) console.log(`--- sample ${label} ---\n${JSON.stringify(message.value, null, 2)}`);
  if (writeFixtures && message.raw !== null) {
    mkdirSync(FIXTURES_DIR, { recursive: true });
    writeFileSync(join(FIXTURES_DIR, `${label}.json`), `${message.raw}\n`);
  }
}

describe.skipIf(servicesMissing('mariadb'))('MariaDbServer', () => {
  it('writes a row-based binary log in UTC, and keeps its data across kill -9 and restarts on the same port', async () => {
    const server = await sharedMariaDb();
    expect(await server.query('SHOW VARIABLES LIKE ?', ['binlog_format'])).toEqual([{ Variable_name: 'binlog_format', Value: 'ROW' }]);
    const [settings] = await server.query<Record<string, unknown>>(
      'SELECT @@log_bin AS log_bin, @@binlog_row_image AS row_image, @@server_id AS server_id, @@time_zone AS tz, @@port AS port',
    );
    expect(settings).toEqual({ log_bin: 1, row_image: 'FULL', server_id: 1, tz: '+00:00', port: server.port });
    // The grants Debezium needs come with ALL PRIVILEGES.
    const grants = (await server.query<Record<string, string>>('SHOW GRANTS')).map((row) => Object.values(row)[0]).join('\n');
    expect(grants).toMatch(/GRANT ALL PRIVILEGES ON \*\.\* TO `cdc`@`%`/);

    const { name: database } = await createMariaDbTestDatabase('kill');
    await server.exec('CREATE TABLE t (id int PRIMARY KEY, name varchar(40))', [], database);
    await server.exec('INSERT INTO t VALUES (?, ?), (?, ?)', [1, 'one', 2, 'two'], database);
    const port = server.port;
    const pid = server.pid;
    expect(pid).toBeGreaterThan(0);

    await server.kill();
    expect(server.running).toBe(false);
    expect(server.pid).toBeUndefined();
    await expect(server.query('SELECT 1')).rejects.toThrow();

    await server.restart();
    expect(server.port).toBe(port);
    expect(server.pid).not.toBe(pid);
    expect(await server.query('SELECT id, name FROM t ORDER BY id', [], database)).toEqual([
      { id: 1, name: 'one' },
      { id: 2, name: 'two' },
    ]);

    await server.stop();
    expect(server.running).toBe(false);
    await server.restart();
    expect(await server.query('SELECT count(*) AS n FROM t', [], database)).toEqual([{ n: 2 }]);
  });
});

describe.skipIf(servicesMissing('mariadb') || kafkaMissing())('Debezium MariaDB connector', () => {
  let mariadb: MariaDbServer;
  let broker: KafkaBroker;
  let worker: ConnectWorker;
  let database: string;

  beforeAll(async () => {
    mariadb = await sharedMariaDb();
    database = (await createMariaDbTestDatabase('maria')).name;
    await mariadb.exec('CREATE TABLE items (id int PRIMARY KEY, name varchar(40))', [], database);
    // No UUID column (MariaDB 10.7+): Debezium 3.0.1's MariaDB DDL parser fails on it ("no viable
    // alternative at input ... `uu` uuid"), and the connector with it.
    await mariadb.exec(
      `CREATE TABLE types (
         id BIGINT UNSIGNED PRIMARY KEY, d DECIMAL(10,2), dneg DECIMAL(10,2), dt DATETIME, dt6 DATETIME(6),
         ts TIMESTAMP(3), dd DATE, tm TIME, tm6 TIME(6), yr YEAR, b1 BIT(1), b10 BIT(10), e ENUM('a','b'),
         s SET('x','y','z'), j JSON, bin VARBINARY(8), f FLOAT, dbl DOUBLE, tiny TINYINT, bool BOOLEAN,
         u INT UNSIGNED, big BIGINT, txt TEXT
       )`,
      [],
      database,
    );
    broker = await sharedKafkaBroker();
    // No Postgres: this worker serves MariaDB connectors only.
    worker = await sharedConnectWorker();
  });

  it('streams insert, update, delete (with a tombstone) and truncate, and a row of many column types', async () => {
    const prefix = uniqueName('mdb');
    const itemsTopic = `${prefix}.${database}.items`;
    const typesTopic = `${prefix}.${database}.types`;
    const { consumer, messages } = await collect(broker, [itemsTopic, typesTopic]);
    try {
      const status = await worker.createMariaDbConnector({
        name: prefix,
        server: mariadb,
        databases: [database],
        topicPrefix: prefix,
        schemasEnable: true,
      });
      expect(status.tasks.map((task) => task.state)).toEqual(['RUNNING']);

      await mariadb.exec(`INSERT INTO items VALUES (1, 'pen')`, [], database);
      await mariadb.exec(`UPDATE items SET name = 'red pen' WHERE id = 1`, [], database);
      await mariadb.exec('DELETE FROM items WHERE id = 1', [], database);
      await mariadb.exec(`INSERT INTO items VALUES (2, 'ink')`, [], database);
      await mariadb.exec('TRUNCATE TABLE items', [], database);

      const items = messages.get(itemsTopic)!;
      // c, u, d, tombstone, c, t
      await waitFor(() => items.length >= 6, { timeoutMs: 60_000, intervalMs: 50, message: `six messages on ${itemsTopic}` });
      const payloads = items.map(payloadOf);
      expect(payloads.map((p) => p?.op ?? 'tombstone')).toEqual(['c', 'u', 'd', 'tombstone', 'c', 't']);
      const [insert, update, del, , , truncate] = payloads as Envelope[];

      expect(items[0]!.value).toHaveProperty('schema');
      expect(items[0]!.key).toEqual({ schema: expect.anything(), payload: { id: 1 } });
      for (const event of [insert, update, del, truncate]) {
        expect(event!.source).toMatchObject({ connector: 'mariadb', db: database, table: 'items', name: prefix });
      }
      expect(insert!.before).toBeNull();
      expect(insert!.after).toEqual({ id: 1, name: 'pen' });
      // binlog_row_image=FULL: the whole old row.
      expect(update!.before).toEqual({ id: 1, name: 'pen' });
      expect(update!.after).toEqual({ id: 1, name: 'red pen' });
      expect(del!.before).toEqual({ id: 1, name: 'red pen' });
      expect(del!.after).toBeNull();
      expect(items[3]!.value).toBeNull(); // the tombstone: same key, null value
      expect(items[3]!.key).toEqual(items[2]!.key);
      expect(truncate!.before).toBeNull();
      expect(truncate!.after).toBeNull();
      expect(items[5]!.key).toBeNull();
      // Where in the binlog: file and position, and MariaDB's GTID.
      expect(insert!.source).toMatchObject({ file: expect.any(String), pos: expect.any(Number), gtid: expect.any(String) });

      sample('insert', items[0]!);
      sample('update', items[1]!);
      sample('delete', items[2]!);
      sample('truncate', items[5]!);

      await mariadb.exec(
        `INSERT INTO types VALUES (18446744073709551615, 1200.50, -0.50, '2024-02-29 23:59:59', '2024-02-29 23:59:59.123456',
           '2024-02-29 23:59:59.500', '2024-02-29', '-01:02:03', '12:34:56.000001', 2024, 1, b'1000000001', 'b', 'x,z',
           '{"a": [1, 2]}', x'0102ff', 1.5, 0.1, -5, true, 4294967295, -9223372036854775808, 'hé')`,
        [],
        database,
      );
      const types = messages.get(typesTopic)!;
      await waitFor(() => types.length >= 1, { timeoutMs: 60_000, intervalMs: 50, message: `the row on ${typesTopic}` });
      const row = payloadOf(types[0]!)!;
      expect(row.op).toBe('c');
      expect(row.source).toMatchObject({ connector: 'mariadb', db: database, table: 'types' });
      expect(row.after).toMatchObject({ e: 'b', s: 'x,z', txt: 'hé', tiny: -5, u: 4294967295 });
      sample('types', types[0]!);

      await worker.deleteConnector(prefix);
    } finally {
      await consumer.disconnect();
    }
  }, 180_000);

  it('sends bare payloads with schemas.enable=false, and an initial snapshot (read over JDBC, in UTC) as op "r"', async () => {
    // The row the first test inserted into `types` (it runs first); only `types` is captured.
    const prefix = uniqueName('mdbsnap');
    const topic = `${prefix}.${database}.types`;
    const { consumer, messages } = await collect(broker, [topic]);
    try {
      await worker.createMariaDbConnector({
        name: prefix,
        server: mariadb,
        databases: [database],
        tables: [`${database}.types`],
        topicPrefix: prefix,
        snapshotMode: 'initial',
        schemasEnable: false,
      });
      await mariadb.exec(`UPDATE types SET txt = 'après' WHERE tiny = -5`, [], database);
      const received = messages.get(topic)!;
      await waitFor(() => received.length >= 2, { timeoutMs: 60_000, intervalMs: 50, message: `two messages on ${topic}` });
      const [snapshot, update] = received.map((m) => m.value as Envelope);
      expect(snapshot).not.toHaveProperty('schema');
      expect(received[0]!.key).toEqual({ id: -1 }); // BIGINT UNSIGNED 2^64-1 as int64 (bigint.unsigned.handling.mode=long)
      // The same instants as the binlog gave: the snapshot reads TIMESTAMP and DATETIME in UTC too. But not
      // the same text: a snapshot's ZonedTimestamp drops trailing zeros of the fraction ("59.5Z"), the
      // binlog's pads it to the column's precision ("59.500Z", as in the update below).
      expect(snapshot).toMatchObject({
        op: 'r',
        before: null,
        after: { ts: '2024-02-29T23:59:59.5Z', dt: 1709251199000, dt6: 1709251199123456, dd: 19782, tm: -3723000000, txt: 'hé' },
        source: { connector: 'mariadb', db: database, table: 'types', snapshot: expect.stringMatching(/^(true|first|last|first_in_data_collection|last_in_data_collection)$/) },
      });
      expect(update).toMatchObject({ op: 'u', before: { txt: 'hé' }, after: { txt: 'après', ts: '2024-02-29T23:59:59.500Z' } });
      await worker.deleteConnector(prefix);
    } finally {
      await consumer.disconnect();
    }
  }, 180_000);
});
