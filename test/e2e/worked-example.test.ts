// The README's worked example, as a plain cache-aside application would live it, on tables left at
// PostgreSQL's default replica identity: the example config (source.replicaIdentity: full) must leave
// no stale entry after any of the example's writes; the same mappings without it leave stale ones.
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/core/lsn.js';
import { MetaConnection } from '../../src/lib/memcached/meta-connection.js';
import { MemcachedServer } from '../harness/memcached.js';
import { createTestDatabase, servicesMissing, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { spawnCli, type WorkerProcess } from './worker-process.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

let worker: WorkerProcess | undefined;
let dir: string | undefined;
let closeStore: (() => Promise<void> | void) | undefined;
afterEach(async () => {
  if (worker !== undefined && worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGTERM');
    await worker.exited;
  }
  worker = undefined;
  await closeStore?.();
  closeStore = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

/** The application's cached reads: key → the query that fills it (as JSON text). */
const LOADERS: Array<[RegExp, (m: RegExpMatchArray) => [string, unknown[]]]> = [
  [/^user:email:(.*)$/, (m) => [`SELECT id, name, email FROM users WHERE email = $1`, [m[1]]]],
  [/^user:(\d+)$/, (m) => [`SELECT id, name, email FROM users WHERE id = $1`, [m[1]]]],
  [
    /^comments:name=(.*):email=(.*)$/,
    (m) => [`SELECT c.id, c.content FROM comments c JOIN users u ON u.id = c.user_id WHERE u.name = $1 AND u.email = $2 ORDER BY c.id`, [m[1], m[2]]],
  ],
  [/^comment:(\d+)$/, (m) => [`SELECT id, user_id, content FROM comments WHERE id = $1`, [m[1]]]],
  [/^comments:user:(\d+)$/, (m) => [`SELECT id, content FROM comments WHERE user_id = $1 ORDER BY id`, [m[1]]]],
];

/** Where the application caches: get, set and the worker's applied position, by key without the prefix. */
interface Store {
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  close(): Promise<void> | void;
}

async function runScenario(replicaIdentity: 'full' | 'check', mappings = 'mappings', cache: 'redis' | 'memcached' = 'redis'): Promise<{ stale: string[]; checked: number }> {
  const pg = await sharedPostgres();
  const db = await createTestDatabase('we');
  // The example schema as a user's existing tables would be: without its REPLICA IDENTITY FULL lines.
  const schema = readFileSync(join(ROOT, 'examples/schema.sql'), 'utf8').replace(/^ALTER TABLE \w+ REPLICA IDENTITY FULL;$/gm, '');
  await pg.query(schema, [], db.name);
  dir = mkdtempSync(join(tmpdir(), 'cdc-we-'));
  cpSync(join(ROOT, mappings), join(dir, 'mappings'), { recursive: true });
  const prefix = `${uniqueName('we')}:`;
  const configFile = cache === 'redis' ? 'cdc-invalidator.yaml' : 'examples/memcached/cdc-invalidator.yaml';
  const config = readFileSync(join(ROOT, configFile), 'utf8')
    .replace(/slot: cdc_invalidator\w*/, `slot: ${uniqueName('slot')}`)
    .replace(/publication: cdc_invalidator\w*/, `publication: ${uniqueName('pub')}`)
    .replace('heartbeatSeconds: 15', 'heartbeatSeconds: 1')
    .replace(/^  replicaIdentity: full$/m, `  replicaIdentity: ${replicaIdentity}`)
    .replace('keyPrefix: ""', `keyPrefix: "${prefix}"`);
  expect(config).toMatch(new RegExp(`^  replicaIdentity: ${replicaIdentity}$`, 'm'));
  writeFileSync(join(dir, 'cdc-invalidator.yaml'), config);
  // The example config as it ships: its URLs and HTTP port come from the environment.
  let store: Store;
  let env: Record<string, string>;
  if (cache === 'redis') {
    const redisServer = await sharedRedis();
    env = { DATABASE_URL: db.url, REDIS_URL: redisServer.url(), HTTP_PORT: '0' };
    const r = new Redis(redisServer.url(), { maxRetriesPerRequest: 1 });
    store = { get: (key) => r.get(prefix + key), set: async (key, value) => void (await r.set(prefix + key, value, 'EX', 3600)), close: () => r.disconnect() };
  } else {
    const server = await MemcachedServer.start();
    const connection = new MetaConnection({ host: '127.0.0.1', port: server.port, timeoutMs: 5_000 });
    env = { DATABASE_URL: db.url, MEMCACHED_SERVER: server.address, HTTP_PORT: '0' };
    store = {
      async get(key) {
        const [reply] = await connection.request([{ verb: 'mg', key: prefix + key, flags: ['v'] }]);
        return reply!.code === 'VA' ? reply!.value!.toString() : null;
      },
      async set(key, value) {
        const [reply] = await connection.request([{ verb: 'ms', key: prefix + key, flags: ['T3600'], value: Buffer.from(value) }]);
        expect(reply!.code).toBe('HD');
      },
      async close() {
        connection.close();
        await server.destroy();
      },
    };
  }
  closeStore = () => store.close();
  worker = spawnCli(['run', '--config', join(dir, 'cdc-invalidator.yaml')], env);
  const w = worker;
  await waitFor(() => w.output().includes('replication started'), { timeoutMs: 30_000, message: 'worker did not start' });

  const sql = <R extends Record<string, unknown> = Record<string, unknown>>(text: string, params: unknown[] = []) =>
    pg.query<R>(text, params, db.name);
  const load = async (key: string) => {
    for (const [re, query] of LOADERS) {
      const m = key.match(re);
      if (m !== null) return JSON.stringify(await sql(...query(m)));
    }
    throw new Error(`no loader for ${key}`);
  };
  /** Textbook cache-aside: GET, on a miss load and SET. */
  const read = async (key: string) => {
    const cached = await store.get(key);
    if (cached !== null) return cached;
    const value = await load(key);
    await store.set(key, value);
    return value;
  };
  const keysNow = async () => {
    const users = await sql<{ id: string; name: string; email: string }>('SELECT id::text, name, email FROM users');
    const comments = await sql<{ id: string }>('SELECT id::text FROM comments');
    return [
      ...users.flatMap((u) => [`user:${u.id}`, `user:email:${u.email}`, `comments:name=${u.name}:email=${u.email}`, `comments:user:${u.id}`]),
      ...comments.map((c) => `comment:${c.id}`),
    ];
  };

  const writes = [
    `UPDATE users SET name = 'Ada King' WHERE id = 1`,
    `UPDATE users SET email = 'alan.turing@example.com' WHERE id = 2`,
    `UPDATE comments SET user_id = 1 WHERE id = 3`,
    `UPDATE comments SET content = 'Computing machinery.' WHERE id = 3`,
    `DELETE FROM comments WHERE id = 2`,
    `DELETE FROM comments WHERE id = 4`,
    `DELETE FROM users WHERE id = 3`,
  ];
  const stale: string[] = [];
  let checked = 0;
  for (const write of writes) {
    // Everything the application could have cached before the write, including the keys it is about to change.
    const before = await keysNow();
    for (const key of before) await read(key);
    await sql(write);
    const lsn = parseLsn((await sql<{ l: string }>('SELECT pg_current_wal_insert_lsn()::text AS l'))[0]!.l);
    await waitFor(async () => {
      const applied = await store.get('cdc-invalidator:applied');
      return applied !== null && parseLsn(applied) >= lsn;
    }, { timeoutMs: 20_000, message: `the worker to apply "${write}"` });
    for (const key of new Set([...before, ...(await keysNow())])) {
      checked++;
      if ((await read(key)) !== (await load(key))) stale.push(`${write} -> ${key}`);
    }
  }
  return { stale, checked };
}

describe.skipIf(servicesMissing('postgres', 'redis', 'memcached'))('the worked example on tables at the default replica identity', () => {
  it('with the example config (replicaIdentity: full), a plain cache-aside app reads fresh data after every write', async () => {
    const { stale, checked } = await runScenario('full');
    expect(checked).toBeGreaterThan(50);
    expect(stale).toEqual([]);
  }, 120_000);

  it('the same cache written as query rules (examples/query-rules): fresh after every write too', async () => {
    const { stale, checked } = await runScenario('full', 'examples/query-rules/mappings');
    expect(checked).toBeGreaterThan(50);
    expect(stale).toEqual([]);
  }, 120_000);

  it('on memcached with only the config changed (examples/memcached), fresh after every write too', async () => {
    const { stale, checked } = await runScenario('full', 'mappings', 'memcached');
    expect(checked).toBeGreaterThan(50);
    expect(stale).toEqual([]);
  }, 120_000);

  it('control: with replicaIdentity: check the example rules fall back to version keys, which such an app never reads', async () => {
    const { stale } = await runScenario('check');
    expect(stale.length).toBeGreaterThan(0);
  }, 120_000);
});
