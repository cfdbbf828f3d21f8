// MariaDB through Debezium's MariaDB connector: MariaDB -> Kafka Connect -> Kafka -> the worker -> Redis,
// with tables named database.table in the rules. Insert, update, delete, a primary-key change, TRUNCATE
// and the column types whose Debezium encodings the worker decodes; then the same schema and rows in
// PostgreSQL (through the Postgres source) and in MariaDB, which must give the same keys. Keys are
// collected from each worker's notifications (redis.notifyChannel).
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { buildWorker, type Assembly } from '../../src/main.js';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker, type ConnectWorker, type KafkaBroker } from '../harness/kafka.js';
import type { MariaDbServer } from '../harness/mariadb.js';
import { createMariaDbTestDatabase, createTestDatabase, servicesMissing, sharedMariaDb, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { runCli } from '../e2e/worker-process.js';
import { recordResult } from '../faults/reliability.js';

/** A timestamp literal: 2024-02-29 23:59:59.5 plus i seconds and 123 µs, in UTC. */
const at = (i: number) => `${new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 500) + i * 1000).toISOString().slice(0, 23).replace('T', ' ')}123`;

/**
 * One column type on both databases: the id column `id` and the value column `v`, their DDL, row i's
 * values as SQL, and an update that changes `v` (so both the old and the new key go).
 */
interface Equivalent {
  name: string;
  label: string;
  pg: string;
  my: string;
  value: (i: number, db: 'pg' | 'my') => string;
  update: { pg: string; my: string };
  /** A key the Postgres source renders, to show the text form. */
  sample: string;
}

const EQUIVALENT: Equivalent[] = [
  { name: 'e_int', label: 'int', pg: 'id int PRIMARY KEY, v int NOT NULL', my: 'id int PRIMARY KEY, v int NOT NULL', value: (i) => `${i}, ${-i * 7}`, update: { pg: 'v = v + 1', my: 'v = v + 1' }, sample: 'e_int:1:-7:1' },
  {
    name: 'e_big',
    label: 'bigint past 2^53',
    pg: 'id bigint PRIMARY KEY, v bigint NOT NULL',
    my: 'id bigint PRIMARY KEY, v bigint NOT NULL',
    value: (i) => `${9007199254740993n + BigInt(i)}, ${i}`,
    update: { pg: 'v = v * 3', my: 'v = v * 3' },
    sample: 'e_big:9007199254740994:1:1',
  },
  {
    name: 'e_text',
    label: 'text / varchar',
    pg: 'id text PRIMARY KEY, v text NOT NULL',
    my: 'id varchar(100) PRIMARY KEY, v varchar(100) NOT NULL',
    value: (i) => `'k ${i}: ü', 'v${i}'`,
    update: { pg: "v = v || '!'", my: "v = CONCAT(v, '!')" },
    sample: 'e_text:k 1: ü:v1:1',
  },
  {
    name: 'e_num',
    label: 'numeric(20,2) / DECIMAL(20,2) past 2^53',
    pg: 'id numeric(20,2) PRIMARY KEY, v numeric(12,2) NOT NULL',
    my: 'id DECIMAL(20,2) PRIMARY KEY, v DECIMAL(12,2) NOT NULL',
    value: (i) => `${i % 2 === 0 ? '' : '-'}${i}000000000000000.0${i % 10}, ${i}.5`,
    update: { pg: 'v = v - 1000', my: 'v = v - 1000' },
    sample: 'e_num:-1000000000000000.01:1.50:1',
  },
  {
    name: 'e_ts',
    label: 'timestamp(6) / DATETIME(6)',
    pg: 'id int PRIMARY KEY, v timestamp(6) NOT NULL',
    my: 'id int PRIMARY KEY, v DATETIME(6) NOT NULL',
    value: (i) => `${i}, '${at(i)}'`,
    update: { pg: "v = v + interval '1 day'", my: 'v = v + INTERVAL 1 DAY' },
    sample: 'e_ts:1:2024-03-01 00:00:00.500123:1',
  },
  {
    name: 'e_tstz',
    label: 'timestamptz / TIMESTAMP(6)',
    pg: 'id int PRIMARY KEY, v timestamptz(6) NOT NULL',
    my: 'id int PRIMARY KEY, v TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)',
    value: (i, db) => `${i}, '${at(i)}${db === 'pg' ? '+00' : ''}'`,
    update: { pg: "v = v - interval '1 hour'", my: 'v = v - INTERVAL 1 HOUR' },
    sample: 'e_tstz:1:2024-03-01 00:00:00.500123+00:1',
  },
  {
    name: 'e_date',
    label: 'date',
    pg: 'id date PRIMARY KEY, v date NOT NULL',
    my: 'id date PRIMARY KEY, v date NOT NULL',
    value: (i) => `'${at(i * 86_400).slice(0, 10)}', '2000-01-01'`,
    update: { pg: "v = v + 1", my: 'v = v + INTERVAL 1 DAY' },
    sample: 'e_date:2024-03-01:2000-01-01:1',
  },
  {
    name: 'e_time',
    label: 'time(6)',
    pg: 'id int PRIMARY KEY, v time(6) NOT NULL',
    my: 'id int PRIMARY KEY, v TIME(6) NOT NULL',
    value: (i) => `${i}, '${at(i).slice(11)}'`,
    update: { pg: "v = v + interval '1 minute'", my: 'v = ADDTIME(v, \'00:01:00\')' },
    sample: 'e_time:1:00:00:00.500123:1',
  },
  {
    name: 'e_bool',
    label: 'boolean / BIT(1)',
    pg: 'id int PRIMARY KEY, v boolean NOT NULL',
    my: 'id int PRIMARY KEY, v BIT(1) NOT NULL',
    value: (i, db) => `${i}, ${db === 'pg' ? String(i % 2 === 0) : `b'${i % 2 === 0 ? 1 : 0}'`}`,
    update: { pg: 'v = NOT v', my: "v = IF(v = b'1', b'0', b'1')" },
    sample: 'e_bool:1:false:1',
  },
  {
    name: 'e_bits',
    label: 'bit(10)',
    pg: 'id int PRIMARY KEY, v bit(10) NOT NULL',
    my: 'id int PRIMARY KEY, v BIT(10) NOT NULL',
    value: (i) => `${i}, b'${(i * 7).toString(2).padStart(10, '0')}'`,
    update: { pg: "v = ~v", my: "v = v ^ b'1111111111'" },
    sample: 'e_bits:1:0000000111:1',
  },
  {
    name: 'e_bytes',
    label: 'bytea / VARBINARY',
    pg: 'id int PRIMARY KEY, v bytea NOT NULL',
    my: 'id int PRIMARY KEY, v VARBINARY(16) NOT NULL',
    value: (i, db) => `${i}, ${db === 'pg' ? `'\\x01ff${i.toString(16).padStart(2, '0')}'::bytea` : `x'01ff${i.toString(16).padStart(2, '0')}'`}`,
    update: { pg: "v = v || '\\x00'::bytea", my: "v = CONCAT(v, x'00')" },
    sample: 'e_bytes:1:\\x01ff01:1',
  },
  {
    name: 'e_float',
    label: 'double precision / DOUBLE',
    pg: 'id int PRIMARY KEY, v double precision NOT NULL',
    my: 'id int PRIMARY KEY, v DOUBLE NOT NULL',
    value: (i) => `${i}, ${i / 10}`,
    update: { pg: 'v = v * 3', my: 'v = v * 3' },
    sample: 'e_float:1:0.1:1',
  },
  {
    name: 'e_enum',
    label: 'enum',
    pg: 'id int PRIMARY KEY, v mood NOT NULL',
    my: "id int PRIMARY KEY, v ENUM('sad', 'ok', 'happy') NOT NULL",
    value: (i) => `${i}, '${['sad', 'ok', 'happy'][i % 3]}'`,
    update: { pg: "v = CASE v WHEN 'sad' THEN 'ok'::mood WHEN 'ok' THEN 'happy'::mood ELSE 'sad'::mood END", my: "v = CASE v WHEN 'sad' THEN 'ok' WHEN 'ok' THEN 'happy' ELSE 'sad' END" },
    sample: 'e_enum:1:ok:1',
  },
];

/** Worker logs go to stdout when TEST_LOG names a level. */
const log = () => (process.env['TEST_LOG'] ? createLogger({ level: process.env['TEST_LOG'] }) : silentLogger());

describe.skipIf(servicesMissing('mariadb', 'postgres', 'redis') || kafkaMissing())('the debezium source on MariaDB', () => {
  let broker: KafkaBroker;
  let connect: ConnectWorker;
  let maria: MariaDbServer;
  let redis: Redis;
  const running: Assembly[] = [];
  const subscribers: Redis[] = [];

  beforeAll(async () => {
    maria = await sharedMariaDb();
    broker = await sharedKafkaBroker();
    connect = await sharedConnectWorker({});
    redis = new Redis((await sharedRedis()).url());
  }, 240_000);
  afterEach(async () => {
    for (const a of running.splice(0)) await a.worker.stop();
  });
  afterAll(() => {
    redis?.disconnect();
    for (const s of subscribers) s.disconnect();
  });

  /** A MariaDB connector on `database`'s tables, their topics created up front (the worker waits for missing ones). */
  async function connector(database: string, tables: string[], options: { schemasEnable?: boolean; settings?: Record<string, string> } = {}) {
    const topicPrefix = uniqueName('maria');
    await connect.createMariaDbConnector({
      name: uniqueName('conn'),
      server: { host: maria.host, port: maria.port, user: maria.user, password: maria.password },
      databases: [database],
      tables: tables.map((t) => `${database}.${t}`),
      topicPrefix,
      schemasEnable: options.schemasEnable ?? true,
      ...(options.settings === undefined ? {} : { settings: options.settings }),
    });
    const topics = tables.map((t) => `${topicPrefix}.${database}.${t}`);
    const admin = broker.client().admin();
    await admin.connect();
    await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 1, replicationFactor: 1 })), waitForLeaders: true });
    await admin.disconnect();
    return Object.assign(topics, { prefix: topicPrefix });
  }

  /** A worker with `source`, the rules, and a notification channel whose keys (without the prefix) are counted. */
  async function worker(source: string, rules: string) {
    const redisUrl = (await sharedRedis()).url();
    const prefix = `${uniqueName('k')}:`;
    const channel = uniqueName('keys');
    const dir = mkdtempSync(join(tmpdir(), 'cdc-maria-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'rules.yaml'), rules);
    writeFileSync(join(dir, 'config.yaml'), `source:\n${source}redis:\n  url: "${redisUrl}"\n  keyPrefix: "${prefix}"\n  notifyChannel: ${channel}\nmappings: ./mappings\nhttp:\n  port: 0\n`);
    const keys = new Map<string, number>();
    const subscriber = new Redis(redisUrl);
    subscribers.push(subscriber);
    subscriber.on('message', (_c: string, message: string) => {
      for (const key of (JSON.parse(message) as { keys: string[] }).keys) {
        const bare = key.slice(prefix.length);
        keys.set(bare, (keys.get(bare) ?? 0) + 1);
      }
    });
    await subscriber.subscribe(channel);
    const assembly = buildWorker(await loadConfig(join(dir, 'config.yaml'), {}), log());
    running.push(assembly);
    await assembly.worker.start();
    return { prefix, keys, assembly };
  }

  const kafkaSource = (topics: string[]) =>
    `  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n  topics: [${topics.join(', ')}]\n`;

  it('invalidates on insert, update, delete, a primary-key change and TRUNCATE, from whole old rows', { timeout: 240_000 }, async () => {
    const db = await createMariaDbTestDatabase('shop');
    await maria.query(`CREATE TABLE users (id int PRIMARY KEY, email varchar(100) NOT NULL, name varchar(100) NOT NULL) CHARACTER SET utf8mb4`, [], db.name);
    // Transaction metadata on <prefix>.transaction; DDL on <prefix>, the schema history on <prefix>.schema-history.
    const topics = await connector(db.name, ['users'], { settings: { 'provide.transaction.metadata': 'true' } });
    const admin = broker.client().admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic: `${topics.prefix}.transaction`, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true });
    await waitFor(async () => (await admin.listTopics()).includes(topics.prefix), { timeoutMs: 60_000, message: 'the connector wrote no schema change' });
    await admin.disconnect();
    const rules = `rules:
  - table: ${db.name}.users
    invalidate: ["user:{id}", "user:email:{email}", "user:name:{name}"]
    bump: ["users:version"]
    fallback:
      invalidate: ["users:all"]
  # The same table under PostgreSQL's default schema: never matches a MariaDB event.
  - table: users
    invalidate: ["wrong:{id}"]
`;
    // Every topic of the connector: its schema changes, schema history and transaction markers are read and skipped.
    const everything = `  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n  topicPattern: "^${topics.prefix}(\\\\..*)?$"\n`;
    const { prefix, keys, assembly } = await worker(everything, rules);
    const seen = (key: string) => expect.poll(() => keys.has(key), { timeout: 60_000, interval: 20 }).toBe(true);
    const sql = (text: string) => maria.query(text, [], db.name);

    await sql(`INSERT INTO users VALUES (1, 'a@x.io', 'Ada')`);
    await seen('user:1');
    await seen('user:email:a@x.io');
    // An update: the old row is whole (binlog_row_image=FULL), so the old email and name go as well.
    await sql(`UPDATE users SET email = 'b@x.io', name = 'Ada L' WHERE id = 1`);
    await seen('user:email:b@x.io');
    expect(keys.has('user:name:Ada') && keys.has('user:name:Ada L')).toBe(true);
    // A primary-key change arrives as a delete of the old key and a create of the new one.
    await sql(`UPDATE users SET id = 2 WHERE id = 1`);
    await seen('user:2');
    // A delete: its keys are rendered from the old row (a key set now must go).
    await redis.mset(`${prefix}user:2`, 'x', `${prefix}user:name:Ada L`, 'x');
    await sql(`DELETE FROM users WHERE id = 2`);
    const gone = (key: string) => expect.poll(async () => redis.exists(prefix + key), { timeout: 60_000, interval: 20 }).toBe(0);
    await gone('user:2');
    await gone('user:name:Ada L');
    await sql(`INSERT INTO users VALUES (3, 'c@x.io', 'Cy')`);
    await sql(`TRUNCATE TABLE users`);
    await seen('users:all');
    await expect.poll(() => assembly.stats.fallbacks, { timeout: 10_000, interval: 20 }).toBe(1);
    // Versions are incremented (INCR), once per applied batch that changed the table.
    const version = Number(await redis.get(`${prefix}users:version`));
    expect(version).toBeGreaterThanOrEqual(1);
    await sql(`INSERT INTO users VALUES (4, 'd@x.io', 'Di')`);
    await expect.poll(async () => Number(await redis.get(`${prefix}users:version`)), { timeout: 60_000, interval: 20 }).toBe(version + 1);
    expect([...keys.keys()].filter((k) => k.startsWith('wrong:'))).toEqual([]);
    // The worker read transaction markers, schema changes and the schema history too, and skipped them.
    const offsets = broker.client().admin();
    await offsets.connect();
    for (const topic of [`${topics.prefix}.transaction`, topics.prefix, `${topics.prefix}.schema-history`]) {
      expect(Number((await offsets.fetchTopicOffsets(topic))[0]!.high), topic).toBeGreaterThan(0);
    }
    await offsets.disconnect();
    expect(assembly.stats.deadLetters).toBe(0);
    expect(keys.get('user:1')).toBeGreaterThanOrEqual(3);
  });

  it('renders each type in its documented text form; what is not exact is unknown (fallback), never a guess', { timeout: 240_000 }, async () => {
    const db = await createMariaDbTestDatabase('types');
    await maria.query(
      `CREATE TABLE t (
         id int PRIMARY KEY, big BIGINT, ubig BIGINT UNSIGNED, d DECIMAL(10,2), dt DATETIME, dt6 DATETIME(6), ts TIMESTAMP(3) NULL,
         dd DATE, tm TIME(6), yr YEAR, b1 BIT(1), b10 BIT(10), e ENUM('a','b'), s SET('x','y','z'), j JSON,
         bin VARBINARY(8), f FLOAT, dbl DOUBLE, bool BOOLEAN, u INT UNSIGNED, txt TEXT
       ) CHARACTER SET utf8mb4`,
      [],
      db.name,
    );
    // Two connectors on the same table: the defaults, and bigint.unsigned.handling.mode=precise.
    const topics = await connector(db.name, ['t']);
    const cols = ['big', 'ubig', 'd', 'dt', 'dt6', 'ts', 'dd', 'tm', 'yr', 'b1', 'b10', 'e', 's', 'j', 'bin', 'f', 'dbl', 'bool', 'u', 'txt'];
    const rules = `rules:\n${cols.map((c) => `  - table: ${db.name}.t\n    invalidate: ["${c}:{id}:{${c}}"]\n    fallback:\n      invalidate: ["${c}:all"]\n`).join('')}`;
    const { keys, assembly } = await worker(kafkaSource(topics), rules);
    await maria.query(
      `INSERT INTO t VALUES (1, -9223372036854775808, 18446744073709551615, 1200.50, '2024-02-29 23:59:59', '2024-02-29 23:59:59.123456',
         '2024-02-29 23:59:59.500', '2024-02-29', '12:34:56.000001', 2024, b'1', b'1000000001', 'b', 'x,z', '{"a": [1, 2]}',
         x'0102ff', 1.5, 0.1, true, 4294967295, 'hé'),
       (2, 5, 7, -0.50, '1999-12-31 00:00:00', '1999-12-31 00:00:00.5', NULL, '1999-12-31', '-01:02:03', 1999, b'0', b'0000000000', 'a', '', '[]',
         x'', -2.5, 1e300, false, 0, '')`,
      [],
      db.name,
    );
    await expect.poll(() => keys.size, { timeout: 60_000, interval: 50 }).toBeGreaterThanOrEqual(2 * cols.length - 1);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const rendered = [...keys.keys()].sort();
    expect(rendered).toEqual(
      [
        // A negative BIGINT: under the default bigint.unsigned.handling.mode=long it could be a wrapped
        // BIGINT UNSIGNED, and the envelope does not say which: unknown, the fallback ran. So is the
        // BIGINT UNSIGNED past 2^63, which arrives as -1.
        'big:all', 'big:2:5', 'ubig:all', 'ubig:2:7',
        'd:1:1200.50', 'd:2:-0.50',
        'dt:1:2024-02-29 23:59:59', 'dt:2:1999-12-31 00:00:00',
        'dt6:1:2024-02-29 23:59:59.123456', 'dt6:2:1999-12-31 00:00:00.5',
        // TIMESTAMP in UTC (the server's time zone is UTC here; Debezium converts it to UTC anyway); NULL renders no key.
        'ts:1:2024-02-29 23:59:59.5+00',
        'dd:1:2024-02-29', 'dd:2:1999-12-31',
        // A negative TIME is unknown.
        'tm:1:12:34:56.000001', 'tm:all',
        'yr:1:2024', 'yr:2:1999',
        'b1:1:true', 'b1:2:false',
        'b10:1:1000000001', 'b10:2:0000000000',
        'e:1:b', 'e:2:a',
        's:1:x,z', 's:2:',
        'bin:1:\\x0102ff', 'bin:2:\\x',
        'f:1:1.5', 'f:2:-2.5',
        'dbl:1:0.1', 'dbl:2:1e+300',
        'bool:1:1', 'bool:2:0',
        'u:1:4294967295', 'u:2:0',
        'txt:1:hé', 'txt:2:',
        // JSON: as the connector writes it.
        ...[...keys.keys()].filter((k) => k.startsWith('j:')),
      ].sort(),
    );
    expect([...keys.keys()].filter((k) => k.startsWith('j:')).sort()).toEqual(['j:1:{"a": [1, 2]}', 'j:2:[]']);
    expect(assembly.stats.deadLetters).toBe(0);
  });

  it('MySQL and MariaDB events without the schema envelope: every value unknown, fallbacks, never a key from a guess', { timeout: 240_000 }, async () => {
    const db = await createMariaDbTestDatabase('bare');
    await maria.query(`CREATE TABLE t (id int PRIMARY KEY, d DECIMAL(10,2) NOT NULL)`, [], db.name);
    const topics = await connector(db.name, ['t'], { schemasEnable: false });
    const { keys, assembly } = await worker(kafkaSource(topics), `rules:\n  - table: ${db.name}.t\n    invalidate: ["t:{id}:{d}"]\n    fallback:\n      invalidate: ["t:all"]\n`);
    await maria.query(`INSERT INTO t VALUES (1, 1234.00)`, [], db.name);
    await expect.poll(() => keys.has('t:all'), { timeout: 60_000, interval: 20 }).toBe(true);
    expect([...keys.keys()]).toEqual(['t:all']);
    expect(assembly.stats.deadLetters).toBe(0);
  });

  it('the same schema and rows in PostgreSQL and in MariaDB give the same keys, over 3,500 changes', { timeout: 300_000 }, async () => {
    const pg = await sharedPostgres();
    const pgDb = await createTestDatabase('eqpg');
    const myDb = await createMariaDbTestDatabase('eqmy');
    await pg.query(
      [
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');",
        ...EQUIVALENT.map((t) => `CREATE TABLE public.${t.name} (n int NOT NULL, ${t.pg}); ALTER TABLE public.${t.name} REPLICA IDENTITY FULL;`),
      ].join('\n'),
      [],
      pgDb.name,
    );
    for (const t of EQUIVALENT) await maria.query(`CREATE TABLE ${t.name} (n int NOT NULL, ${t.my}) CHARACTER SET utf8mb4`, [], myDb.name);
    const topics = await connector(myDb.name, EQUIVALENT.map((t) => t.name));
    const rules = (namespace: string) =>
      `rules:\n${EQUIVALENT.map((t) => `  - table: ${namespace}.${t.name}\n    invalidate: ["${t.name}:{id}:{v}:{n}"]\n`).join('')}`;
    const postgres = await worker(`  kind: postgres\n  url: "${pgDb.url}"\n  slot: ${uniqueName('slot')}\n  publication: ${uniqueName('pub')}\n`, rules('public'));
    const mariadb = await worker(kafkaSource(topics), rules(myDb.name));

    // Per table: 100 inserts, an update of every row, a delete of half of them.
    for (const t of EQUIVALENT) {
      for (let i = 1; i <= 100; i++) {
        await pg.query(`INSERT INTO public.${t.name} (n, id, v) VALUES (${i}, ${t.value(i, 'pg')})`, [], pgDb.name);
        await maria.query(`INSERT INTO ${t.name} (n, id, v) VALUES (${i}, ${t.value(i, 'my')})`, [], myDb.name);
      }
      await pg.query(`UPDATE public.${t.name} SET n = n + 1000, ${t.update.pg}`, [], pgDb.name);
      await maria.query(`UPDATE ${t.name} SET n = n + 1000, ${t.update.my}`, [], myDb.name);
      await pg.query(`DELETE FROM public.${t.name} WHERE n % 2 = 0`, [], pgDb.name);
      await maria.query(`DELETE FROM ${t.name} WHERE n % 2 = 0`, [], myDb.name);
    }
    const changes = EQUIVALENT.length * 250;
    const applied = (a: Assembly) => a.stats.changes;
    await waitFor(() => applied(postgres.assembly) >= changes && applied(mariadb.assembly) >= changes, {
      timeoutMs: 180_000,
      message: `not every change applied: postgres ${applied(postgres.assembly)}, mariadb ${applied(mariadb.assembly)} of ${changes}`,
    });
    await waitFor(() => mariadb.keys.size >= postgres.keys.size && postgres.keys.size > 0, { timeoutMs: 30_000, message: 'keys' }).catch(() => undefined);
    const sorted = (m: Map<string, number>) => [...m.keys()].sort();
    expect(sorted(mariadb.keys)).toEqual(sorted(postgres.keys));
    // Each row's key before and after its update (which changes it); the deletes' keys are the latter.
    expect(postgres.keys.size).toBe(EQUIVALENT.length * 200);
    for (const sample of EQUIVALENT.map((t) => t.sample)) expect(postgres.keys.has(sample), sample).toBe(true);
    expect(postgres.assembly.stats.deadLetters + mariadb.assembly.stats.deadLetters).toBe(0);
    expect(postgres.assembly.stats.fallbacks + mariadb.assembly.stats.fallbacks).toBe(0);
    recordResult({
      id: 'D6',
      title: 'Cross-database equivalence, PostgreSQL and MariaDB (Debezium)',
      runs: 1,
      changes: 2 * changes,
      lost: 0,
      duplicated: null,
      recoverySeconds: null,
      notes:
        `${postgres.keys.size} distinct keys, identical from the Postgres source and from Debezium's MariaDB connector ` +
        `(${EQUIVALENT.length} column types: ${EQUIVALENT.map((t) => t.label).join(', ')}; 100 inserts, 100 updates, 50 deletes each)`,
    });
  });

  it('check names the connector and table of each topic, and what does not match the rules', { timeout: 240_000 }, async () => {
    const db = await createMariaDbTestDatabase('chk');
    await maria.query(`CREATE TABLE users (id int PRIMARY KEY)`, [], db.name);
    await maria.query(`CREATE TABLE orders (id int PRIMARY KEY)`, [], db.name);
    await maria.query(`CREATE TABLE bare (id int PRIMARY KEY)`, [], db.name);
    const topics = await connector(db.name, ['users', 'orders']);
    const [bareTopic] = await connector(db.name, ['bare'], { schemasEnable: false });
    await maria.query(`INSERT INTO users VALUES (1)`, [], db.name);
    await maria.query(`INSERT INTO orders VALUES (1)`, [], db.name);
    await maria.query(`INSERT INTO bare VALUES (1)`, [], db.name);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-maria-check-'));
    mkdirSync(join(dir, 'mappings'));
    // users without its database: public.users, which no MariaDB event names.
    writeFileSync(
      join(dir, 'mappings', 'rules.yaml'),
      `rules:\n  - table: users\n    invalidate: ["user:{id}"]\n  - table: ${db.name}.orders\n    invalidate: ["order:{id}"]\n  - table: ${db.name}.bare\n    invalidate: ["bare:{id}"]\n`,
    );
    writeFileSync(
      join(dir, 'config.yaml'),
      `source:\n  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  topics: [${[...topics, bareTopic!, `${db.name}.nothing`].join(', ')}]\n` +
        `redis:\n  url: "${(await sharedRedis()).url()}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
    );
    const [usersTopic, ordersTopic] = topics;
    const consumer = broker.client().admin();
    await consumer.connect();
    await waitFor(async () => (await Promise.all([usersTopic!, ordersTopic!, bareTopic!].map(async (t) => Number((await consumer.fetchTopicOffsets(t))[0]!.high)))).every((h) => h > 0), {
      timeoutMs: 60_000,
      message: 'events in the topics',
    });
    const groupsBefore = (await consumer.listGroups()).groups.length;
    const { code, output } = await runCli(['check', '--config', join(dir, 'config.yaml')]);
    expect(code, output).toBe(1);
    expect(output).toMatch(/ok +kafka: 1 broker reachable/);
    expect(output).toContain(`topic ${ordersTopic}: Debezium's mariadb connector, table ${db.name}.orders, mapped by 1 rule`);
    expect(output).toContain(`topic ${usersTopic}: Debezium's mariadb connector, table ${db.name}.users, which no rule maps: its changes are ignored`);
    expect(output).toContain(`the rules name public.users; events name the table ${db.name}.users`);
    expect(output).toContain(`topic ${bareTopic}: mariadb events without the schema envelope`);
    expect(output).toContain(`topic ${db.name}.nothing: does not exist yet`);
    expect(output).toContain(`table public.users: mapped by the rules, and no event of it in the topics' last messages`);
    // check's own consumer group is gone.
    expect((await consumer.listGroups()).groups.length).toBe(groupsBefore);
    await consumer.disconnect();
  });
});
