// The MariaDB example (examples/mariadb/, `docker compose --profile mariadb up`) without Docker: its schema
// loaded into a MariaDB of the harness, its connector config registered in Kafka Connect with only the
// addresses changed, and the worker run by the CLI on its config and mappings as they are. Then the
// compose file's "Try" steps, and a comment moved to another user.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { kafkaMissing, sharedConnectWorker, sharedKafkaBroker } from '../harness/kafka.js';
import { servicesMissing, sharedMariaDb, sharedRedis } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { spawnCli, type WorkerProcess } from './worker-process.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLE = join(ROOT, 'examples', 'mariadb');

describe.skipIf(servicesMissing('mariadb', 'redis') || kafkaMissing())('the MariaDB example', () => {
  let worker: WorkerProcess | undefined;
  let redis: Redis | undefined;
  afterAll(async () => {
    if (worker !== undefined && worker.child.exitCode === null) {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    redis?.disconnect();
  });

  it('invalidates on the example schema with the example connector, config and mappings', { timeout: 240_000 }, async () => {
    const maria = await sharedMariaDb();
    // The schema file as the mariadb image runs it (as root): database app, the debezium account, rows.
    const schema = readFileSync(join(EXAMPLE, 'schema.sql'), 'utf8');
    let database: string | undefined;
    for (const statement of schema.split(/;\s*$/m).map((s) => s.replace(/^\s*--.*$/gm, '').trim()).filter((s) => s !== '')) {
      // The harness's queries go through a pool: USE is a database per query instead.
      const use = /^USE (\w+)$/i.exec(statement);
      if (use !== null) database = use[1];
      else await maria.query(statement, [], database);
    }
    const broker = await sharedKafkaBroker();
    const connect = await sharedConnectWorker({});
    const example = JSON.parse(readFileSync(join(EXAMPLE, 'connector-app.json'), 'utf8')) as Record<string, string>;
    // Only the addresses differ from the compose file's.
    const config = {
      ...example,
      'database.hostname': maria.host,
      'database.port': String(maria.port),
      'schema.history.internal.kafka.bootstrap.servers': broker.bootstrap(),
    };
    await connect.rest('PUT', '/connectors/shop/config', config);
    await connect.waitForConnectorRunning('shop');
    const redisUrl = (await sharedRedis()).url();
    redis = new Redis(redisUrl);
    const admin = broker.client().admin();
    await admin.connect();
    await admin.createTopics({ topics: ['shop.app.users', 'shop.app.comments'].map((topic) => ({ topic, numPartitions: 1, replicationFactor: 1 })), waitForLeaders: true });
    await admin.disconnect();

    worker = spawnCli(['run', '--config', join(EXAMPLE, 'cdc-invalidator.yaml')], { KAFKA_BROKERS: broker.bootstrap(), REDIS_URL: redisUrl, HTTP_PORT: '0' });
    await waitFor(() => /joined consumer group/.test(worker!.output()), { timeoutMs: 60_000, message: `worker did not start\n${worker.output()}` });
    // The connector streams once its binlog client is connected; until then a change could predate it.
    await waitFor(async () => (await maria.query<{ n: number }>(`SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE COMMAND LIKE 'Binlog Dump%'`))[0]!.n > 0, {
      timeoutMs: 60_000,
      message: 'the connector is not reading the binary log',
    });
    const gone = (key: string) => expect.poll(async () => redis!.exists(key), { timeout: 60_000, interval: 50 }).toBe(0);

    // docker-compose.yml's "Try" steps.
    await redis.set('mariadb:user:1', 'cached');
    await redis.set('mariadb:comments:name=Ada Lovelace:email=ada@example.com', 'cached');
    await maria.query(`UPDATE users SET name = 'Ada King' WHERE id = 1`, [], 'app');
    await gone('mariadb:user:1');
    await gone('mariadb:comments:name=Ada Lovelace:email=ada@example.com');

    // A comment moved to another user: both users' lists go, from the whole old row.
    await redis.mset('mariadb:comments:user:1', 'cached', 'mariadb:comments:user:2', 'cached', 'mariadb:comment:1', 'cached');
    await maria.query(`UPDATE comments SET user_id = 2 WHERE id = 1`, [], 'app');
    await gone('mariadb:comments:user:1');
    await gone('mariadb:comments:user:2');
    await gone('mariadb:comment:1');
    expect(Number(await redis.get('mariadb:comments:version'))).toBeGreaterThanOrEqual(1);
    expect(worker.output()).not.toMatch(/"level":(50|60)/);
  });
});
