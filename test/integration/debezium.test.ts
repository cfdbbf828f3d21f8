// The Debezium source end to end: Postgres -> Debezium (Kafka Connect) -> Kafka -> the worker -> Redis,
// with the same mapping language as the Postgres source.
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { buildWorker, type Assembly } from '../../src/main.js';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker, type ConnectWorker, type KafkaBroker } from '../harness/kafka.js';
import { createTestDatabase, servicesMissing, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

const RULES = `rules:
  - table: public.users
    invalidate: ["user:{id}", "user:email:{email}"]
    bump: ["users:version"]
    fallback:
      invalidate: ["users:all"]
  - table: public.marks
    invalidate: ["mark:{id}"]
  - table: public.prices
    invalidate: ["price:{id}:{price}"]
    fallback:
      invalidate: ["prices:all"]
`;

describe.skipIf(servicesMissing('postgres', 'redis') || kafkaMissing())('the debezium source', () => {
  let broker: KafkaBroker;
  let connect: ConnectWorker;
  let db: { name: string; url: string };
  let redis: Redis;
  const running: Assembly[] = [];

  beforeAll(async () => {
    const pg = await sharedPostgres();
    db = await createTestDatabase('dbz');
    await pg.query(
      `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);
       ALTER TABLE public.users REPLICA IDENTITY FULL;
       CREATE TABLE public.marks (id int PRIMARY KEY);
       CREATE TABLE public.prices (id int PRIMARY KEY, price numeric(12,2) NOT NULL);`,
      [],
      db.name,
    );
    broker = await sharedKafkaBroker();
    connect = await sharedConnectWorker({ postgres: { host: '127.0.0.1', port: pg.port, user: 'postgres', database: db.name } });
    redis = new Redis((await sharedRedis()).url());
  }, 240_000);

  afterEach(async () => {
    for (const a of running.splice(0)) await a.worker.stop();
  });
  afterAll(() => redis?.disconnect());

  /** catalog: the worker reads identities and column types from the database (source.url), else they are declared. */
  async function setup(schemasEnable: boolean, options: { catalog?: boolean; settings?: Record<string, string> } = {}) {
    const topicPrefix = uniqueName('app');
    await connect.createPostgresConnector({
      name: uniqueName('conn'),
      database: db.name,
      slot: uniqueName('dbz_slot'),
      publication: uniqueName('dbz_pub'),
      tables: ['public.users', 'public.marks', 'public.prices'],
      ...(options.settings ? { settings: options.settings } : {}),
      topicPrefix,
      schemasEnable,
    });
    // Debezium creates a table's topic with its first change; the worker waits for topics that do not
    // exist yet, so create them up front to start it at once.
    const admin = broker.client().admin();
    await admin.connect();
    await admin.createTopics({
      topics: ['users', 'marks', 'prices'].map((t) => ({ topic: `${topicPrefix}.public.${t}`, numPartitions: 1, replicationFactor: 1 })),
      waitForLeaders: true,
    });
    await admin.disconnect();
    const prefix = `${uniqueName('k')}:`;
    const dir = mkdtempSync(join(tmpdir(), 'cdc-dbz-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'rules.yaml'), RULES);
    writeFileSync(
      join(dir, 'config.yaml'),
      `source:\n  kind: debezium\n  brokers: ["${broker.bootstrap()}"]\n  groupId: ${uniqueName('group')}\n` +
        `  topics: [${topicPrefix}.public.users, ${topicPrefix}.public.marks, ${topicPrefix}.public.prices]\n` +
        (options.catalog
          ? `  url: "${db.url}"\n`
          : `  tableIdentities:\n    users: full\n    marks: default\n    prices: default\n`) +
        `redis:\n  url: "${(await sharedRedis()).url()}"\n  keyPrefix: "${prefix}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
    );
    const log = process.env['TEST_LOG'] ? createLogger({ level: process.env['TEST_LOG'] }) : silentLogger();
    const assembly = buildWorker(await loadConfig(join(dir, 'config.yaml'), {}), log);
    running.push(assembly);
    await assembly.worker.start();
    const sql = (text: string) => sharedPostgres().then((pg) => pg.query(text, [], db.name));
    let mark = 0;
    /** Waits until every change committed before it has been applied, through the same path. */
    const barrier = async () => {
      const id = ++mark + Math.floor(Math.random() * 1e6);
      await redis.set(`${prefix}mark:${id}`, 'x');
      await sql(`INSERT INTO marks VALUES (${id})`);
      await waitFor(async () => (await redis.exists(`${prefix}mark:${id}`)) === 0, { timeoutMs: 60_000, message: 'barrier not applied' });
    };
    return { prefix, topicPrefix, assembly, sql, barrier };
  }

  for (const schemasEnable of [true, false]) {
    it(`invalidates on insert, update, delete and truncate (schemas.enable=${schemasEnable})`, { timeout: 180_000 }, async () => {
      const { prefix, sql, barrier, assembly } = await setup(schemasEnable);
      const has = async (key: string) => (await redis.exists(prefix + key)) === 1;
      await redis.mset(`${prefix}user:1`, 'x', `${prefix}user:email:a@x.io`, 'x', `${prefix}user:email:b@x.io`, 'x', `${prefix}users:all`, 'x');
      // Debezium writes one topic per table and Kafka orders nothing across topics, so a barrier row
      // in another table says nothing about this one: each effect is waited for itself.
      const gone = (key: string) => expect.poll(() => has(key), { timeout: 60_000, interval: 20 }).toBe(false);
      await sql(`INSERT INTO users VALUES (1, 'a@x.io')`);
      await gone('user:1');
      await gone('user:email:a@x.io');

      await redis.mset(`${prefix}user:1`, 'x', `${prefix}user:email:a@x.io`, 'x');
      await sql(`UPDATE users SET email = 'b@x.io' WHERE id = 1`);
      await gone('user:email:a@x.io');
      await gone('user:email:b@x.io');

      await redis.set(`${prefix}user:1`, 'x');
      await sql(`DELETE FROM users WHERE id = 1`);
      await gone('user:1');
      // Debezium's events carry the change's LSN, not the commit's: version keys are INCRemented.
      await expect.poll(async () => Number(await redis.get(`${prefix}users:version`)), { timeout: 60_000, interval: 20 }).toBe(3);

      await sql(`INSERT INTO users VALUES (2, 'c@x.io')`);
      await sql(`TRUNCATE users`);
      await gone('users:all');
      await expect.poll(() => assembly.stats.fallbacks, { timeout: 10_000, interval: 20 }).toBe(1);
      await barrier();
      expect(assembly.stats.deadLetters).toBe(0);
    });
  }

  it('turns a malformed message into a dead letter and keeps consuming', { timeout: 180_000 }, async () => {
    const { prefix, topicPrefix, sql } = await setup(false);
    const producer = broker.client().producer();
    await producer.connect();
    await producer.send({ topic: `${topicPrefix}.public.users`, messages: [{ key: '{"id":9}', value: '{not json' }, { key: null, value: '{"op":"x"}' }, { key: null, value: '{}' }] });
    await producer.disconnect();
    await redis.set(`${prefix}user:5`, 'x');
    await sql(`INSERT INTO users VALUES (5, 'e@x.io')`);
    // The insert follows the three messages on the same partition: once it is applied, they are too.
    await expect.poll(() => redis.exists(`${prefix}user:5`), { timeout: 60_000, interval: 20 }).toBe(0);
    const letters = await redis.xrange(`${prefix}cdc-invalidator:dead-letters`, '-', '+');
    expect(letters).toHaveLength(3);
    const fields = letters.map(([, f]) => Object.fromEntries(f.flatMap((v, i) => (i % 2 === 0 ? [[v, f[i + 1]]] : []))));
    // {} is neither a heartbeat (those come on __debezium-heartbeat.*) nor anything else Debezium sends.
    expect(fields.map((f) => f['reason'])).toEqual(['malformed_event', 'malformed_event', 'malformed_event']);
    expect(fields[0]!['detail']).toContain('not JSON');
    expect(fields[0]!['position']).toContain(`${topicPrefix}.public.users[0]@`);
  });

  it('without the schema envelope, precise decimals decode with the catalog\'s scale; DEFAULT deletes fall back', { timeout: 180_000 }, async () => {
    // decimal.handling.mode=precise (the connector's default) and schemas.enable=false: 1200.00 arrives
    // as the bare base64 string "AdTA"; only the catalog says it is a numeric(12,2).
    const { prefix, sql, assembly } = await setup(false, { catalog: true, settings: { 'decimal.handling.mode': 'precise' } });
    const has = async (key: string) => (await redis.exists(prefix + key)) === 1;
    await redis.mset(`${prefix}price:1:1200.00`, 'x', `${prefix}price:2:-0.50`, 'x', `${prefix}prices:all`, 'x');
    await sql(`INSERT INTO prices VALUES (1, 1200), (2, -0.5)`);
    // Each table has its own topic, unordered against the others: the effects are waited for themselves.
    await expect.poll(() => has('price:1:1200.00'), { timeout: 60_000, interval: 20 }).toBe(false);
    await expect.poll(() => has('price:2:-0.50'), { timeout: 60_000, interval: 20 }).toBe(false);
    expect(await has('prices:all')).toBe(true);
    expect(assembly.stats.fallbacks).toBe(0);

    // REPLICA IDENTITY DEFAULT: Debezium's old row carries the key and a stand-in price (0), never the real one.
    await redis.mset(`${prefix}price:1:0.00`, 'x');
    await sql(`DELETE FROM prices WHERE id = 1`);
    // The fallback and the key that must stay come from the same event: once one is seen, so is the other.
    await expect.poll(() => has('prices:all'), { timeout: 60_000, interval: 20 }).toBe(false);
    expect(await has('price:1:0.00')).toBe(true);
    await expect.poll(() => assembly.stats.fallbacks, { timeout: 10_000, interval: 20 }).toBe(1);
    expect(assembly.stats.deadLetters).toBe(0);
  });
});
