// Scenario 11: security, through the built binary.
//  (a) SQL is parameterised or identifier-quoted: a schema, tables, columns and a publication whose
//      names hold double quotes, single quotes, spaces, capitals and non-ASCII letters work end to end
//      (setup, streaming, lookups, check, explain).
//  (b) Connection passwords never appear in logs (LOG_LEVEL=trace), errors, /status, /metrics or the
//      output of check and explain.
//  (c) Authentication and TLS are honoured: PostgreSQL SCRAM passwords, PostgreSQL TLS (sslmode), Redis
//      AUTH (requirepass and ACL users) and Redis TLS (rediss://).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { freePort } from '../harness/free-port.js';
import type { PostgresServer } from '../harness/postgres.js';
import {
  createPasswordRole,
  opensslMissing,
  passwordUrl,
  securePostgres,
  selfSignedCertificate,
  startSecureRedis,
  type Certificate,
  type SecureRedis,
} from '../harness/secure-services.js';
import { createTestDatabase, servicesMissing, sharedPostgres, uniqueName } from '../harness/services.js';
import { AbortWaitError, waitFor } from '../harness/wait-for.js';
import { recordResult } from './reliability.js';
import { runBinary } from './run-binary.js';

// Each password has a distinctive alphanumeric core, present in its raw and its percent-encoded form,
// so one substring test covers both. The PostgreSQL ones also hold characters a URL must encode.
const PG_PASSWORD = 'Zq7PgSecretCore91/@:#?%';
const PG_TLS_PASSWORD = 'Xk3PgTlsSecretCore55&=+ ';
const REDIS_PASSWORD = 'Rk4RedisSecretCore77';
const REDIS_DEFAULT_PASSWORD = 'Dq8RedisDefaultSecretCore12';
const WRONG_PASSWORD = 'Wr0ngSecretCore66';
const SECRET_CORES = ['Zq7PgSecretCore91', 'Xk3PgTlsSecretCore55', 'Rk4RedisSecretCore77', 'Dq8RedisDefaultSecretCore12', 'Wr0ngSecretCore66'];

const WORKER_ROLE = 'cdc_worker';
const TLS_ROLE = 'cdc_tls';
const REDIS_USER = 'cdc';

/** waitFor, with `context()` (a worker's output, say) added to the timeout error. */
async function until<T>(predicate: () => T | Promise<T>, timeoutMs: number, message: string, context: () => string): Promise<NonNullable<T>> {
  try {
    return await waitFor(predicate, { timeoutMs, message });
  } catch (err) {
    throw new Error(`${err instanceof Error ? err.message : String(err)}\n${context()}`, { cause: err });
  }
}

function expectNoSecret(text: string, where: string): void {
  for (const core of SECRET_CORES) expect(text, `${where} holds a password:\n${text}`).not.toContain(core);
  // A URL with credentials in any form (user:password@host), but for the placeholder of a fix line.
  expect(text, where).not.toMatch(/(postgres(ql)?|rediss?):\/\/(?!user:password@)[^/\s"@]*:[^/\s"@*[]+@/);
}

const verified: string[] = [];
const notVerified: string[] = [];
const workers: WorkerProcess[] = [];
const dirs: string[] = [];

let pgServer: PostgresServer;
let redis: SecureRedis;
let cert: Certificate;

const missing = servicesMissing('postgres-binaries', 'redis-binaries') || opensslMissing();

/** A database whose tables belong to `owner`, who may create a publication in it. */
async function ownedDatabase(owner: string, schemaSql: string, ownedTables: string[], ownedSchemas: string[]) {
  const db = await createTestDatabase('sec');
  await pgServer.query(schemaSql, [], db.name);
  const grants = [
    `GRANT CREATE ON DATABASE "${db.name}" TO ${owner}`,
    ...ownedSchemas.map((s) => `ALTER SCHEMA ${s} OWNER TO ${owner}`),
    ...ownedTables.map((t) => `ALTER TABLE ${t} OWNER TO ${owner}`),
  ];
  await pgServer.query(grants.join(';\n'), [], db.name);
  return db;
}

interface Setup {
  dir: string;
  configPath: string;
  prefix: string;
  slot: string;
  publication: string;
}

function writeSetup(o: { url: string; redisUrl: string; rules: string; publication?: string; slot?: string }): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-sec-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'mappings'));
  writeFileSync(join(dir, 'mappings', 'rules.yaml'), `rules:\n${o.rules}`);
  const prefix = `${uniqueName('sec')}:`;
  const slot = o.slot ?? uniqueName('slot');
  const publication = o.publication ?? uniqueName('pub');
  const configPath = join(dir, 'cdc-invalidator.yaml');
  // JSON strings are YAML double-quoted scalars: any name or URL goes in as it is.
  writeFileSync(
    configPath,
    [
      'source:',
      '  kind: postgres',
      `  url: ${JSON.stringify(o.url)}`,
      `  slot: ${slot}`,
      `  publication: ${JSON.stringify(publication)}`,
      '  heartbeatSeconds: 1',
      'redis:',
      `  url: ${JSON.stringify(o.redisUrl)}`,
      `  keyPrefix: ${JSON.stringify(prefix)}`,
      'mappings: ./mappings',
      'http:',
      '  host: 127.0.0.1',
      '  port: 0',
      '  slotStatsIntervalSeconds: 1',
      '',
    ].join('\n'),
  );
  return { dir, configPath, prefix, slot, publication };
}

async function startWorker(configPath: string, env: Record<string, string> = {}): Promise<{ worker: WorkerProcess; port: number }> {
  const worker = spawnCli(['run', '--config', configPath], { LOG_LEVEL: 'trace', ...env });
  workers.push(worker);
  await until(
    () => {
      if (worker.child.exitCode !== null) throw new AbortWaitError(`worker exited with ${worker.child.exitCode}`);
      return worker.output().includes('replication started');
    },
    30_000,
    'the worker to start streaming',
    () => worker.output(),
  );
  const listening = worker
    .output()
    .split('\n')
    .find((l) => l.includes('"http listening"'));
  const port = (JSON.parse(listening!) as { port: number }).port;
  return { worker, port };
}

async function stopWorker(worker: WorkerProcess): Promise<number | string> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) worker.child.kill('SIGTERM');
  return await worker.exited;
}

async function redisClient(): Promise<Redis> {
  const client = new Redis(redis.url({ user: REDIS_USER, password: REDIS_PASSWORD }), { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  return client;
}

beforeAll(async () => {
  if (missing) return;
  pgServer = await sharedPostgres();
  cert = await selfSignedCertificate();
  await securePostgres(pgServer, { certificate: cert, tlsOnlyRoles: [TLS_ROLE] });
  await createPasswordRole(pgServer, WORKER_ROLE, PG_PASSWORD, { replication: true });
  await createPasswordRole(pgServer, TLS_ROLE, PG_TLS_PASSWORD, { replication: true });
  redis = await startSecureRedis({
    certificate: cert,
    defaultPassword: REDIS_DEFAULT_PASSWORD,
    users: [{ name: REDIS_USER, password: REDIS_PASSWORD }],
  });
}, 120_000);

afterEach(async () => {
  for (const worker of workers.splice(0)) {
    if (worker.child.exitCode === null && worker.child.signalCode === null) {
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
  }
});

afterAll(async () => {
  if (missing) return;
  await pgServer
    ?.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active`)
    .catch(() => undefined);
  await redis?.destroy();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  if (cert !== undefined) rmSync(join(cert.certFile, '..'), { recursive: true, force: true });
  recordResult({
    id: '11',
    title: 'Security',
    runs: verified.length + notVerified.length,
    changes: verified.length,
    lost: notVerified.length,
    duplicated: null,
    recoverySeconds: null,
    notes: [`verified: ${verified.join('; ')}`, ...(notVerified.length > 0 ? [`NOT verified (failed): ${notVerified.join('; ')}`] : [])].join('. '),
  });
});

/** Runs a check, recording it under `label` as verified or not. */
async function scenario(label: string, body: () => Promise<void>): Promise<void> {
  try {
    await body();
    verified.push(label);
  } catch (err) {
    notVerified.push(label);
    throw err;
  }
}

describe.skipIf(missing)('security, through the built binary', () => {
  test('(a) quoted, odd and non-ASCII identifiers work end to end: setup, streaming, lookups, check, explain', async () => {
    await scenario('odd identifiers end to end (setup, stream, lookup, check, explain)', async () => {
      const schema = `"My ""Odd"" Schema"`;
      const items = `${schema}."Order Items 'x'"`;
      const owners = `${schema}."Owners ""Ø"""`;
      const db = await ownedDatabase(
        WORKER_ROLE,
        `CREATE SCHEMA ${schema};
         CREATE TABLE ${items} ("Id" int PRIMARY KEY, "Weird ""Col""" text, "Ünïcødé Ключ" text, "Owner Id" int);
         ALTER TABLE ${items} REPLICA IDENTITY FULL;
         CREATE TABLE ${owners} ("Id" int PRIMARY KEY, "Näme 'n'" text);
         ALTER TABLE ${owners} REPLICA IDENTITY FULL;
         INSERT INTO ${owners} VALUES (1, 'Ann ''the'' "First"'), (2, 'Bøb; DROP TABLE x --');`,
        [items, owners],
        [schema],
      );
      // The mapping names tables with the quoted syntax of the README: "schema"."table", "" for a quote.
      const itemsName = `"My ""Odd"" Schema"."Order Items 'x'"`;
      const ownersName = `"My ""Odd"" Schema"."Owners ""Ø"""`;
      const rules = `
  - table: ${JSON.stringify(itemsName)}
    when:
      changed: ['Weird "Col"', "Ünïcødé Ключ", "Owner Id"]
    lookup:
      owner:
        sql: ${JSON.stringify(`SELECT "Näme 'n'" AS "the ""name""" FROM ${owners} WHERE "Id" = $1`)}
        params: ["Owner Id"]
    invalidate:
      - "item:{Id}"
      - 'weird:{Weird "Col"}'
      - "uni:{Ünïcødé Ключ}"
      - 'owner:{owner.the "name"}'
  - table: ${JSON.stringify(ownersName)}
    invalidate: ["owner:{Näme 'n'}"]
`;
      const setup = writeSetup({
        url: passwordUrl(pgServer, WORKER_ROLE, PG_PASSWORD, db.name),
        redisUrl: redis.url({ user: REDIS_USER, password: REDIS_PASSWORD }),
        rules,
        publication: `Pub "Ödd" 'x' ${uniqueName('p')}`,
      });
      const sql = (text: string, params: unknown[] = []) => pgServer.query(text, params, db.name);

      // check: every line ok (warnings allowed), as the password role.
      const check = await runBinary(['check', '--config', setup.configPath]);
      expect(check.code, check.output).toBe(0);
      expect(check.output).toContain(`ok    table "My ""Odd"" Schema"."Order Items 'x'": columns Id, Weird "Col", Ünïcødé Ключ and Owner Id exist`);
      expect(check.output).toContain(`ok    table "My ""Odd"" Schema"."Owners ""Ø""": column Näme 'n' exists`);
      expect(check.output).toContain('lookup "owner": the query plans');
      expectNoSecret(check.output, 'check output');

      // explain: the lookup runs for the old and the new owner.
      const explain = await runBinary([
        'explain', '--config', setup.configPath, '--table', itemsName, '--op', 'update',
        '--before', JSON.stringify({ Id: 7, 'Weird "Col"': `a'"b`, 'Ünïcødé Ключ': 'ж', 'Owner Id': 1 }),
        '--after', JSON.stringify({ Id: 7, 'Weird "Col"': `a'"b`, 'Ünïcødé Ключ': 'ж', 'Owner Id': 2 }),
      ]);
      expect(explain.code, explain.output).toBe(0);
      for (const key of ['item:7', `weird:a'"b`, 'uni:ж', `owner:Ann 'the' "First"`, 'owner:Bøb; DROP TABLE x --']) {
        expect(explain.stdout).toContain(`DEL ${key}\n`);
      }
      expectNoSecret(explain.output, 'explain output');

      // run: setup creates the publication and the slot for these names, then streams.
      const { worker, port } = await startWorker(setup.configPath);
      const [pub] = await sql(
        `SELECT count(*)::int AS n FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = ANY($3)`,
        [setup.publication, 'My "Odd" Schema', [`Order Items 'x'`, 'Owners "Ø"']],
      );
      expect(pub!['n']).toBe(2);
      const [slot] = await sql(`SELECT plugin, active FROM pg_replication_slots WHERE slot_name = $1`, [setup.slot]);
      expect(slot).toEqual({ plugin: 'pgoutput', active: true });

      const client = await redisClient();
      try {
        const seed = (...keys: string[]) => Promise.all(keys.map((k) => client.set(setup.prefix + k, 'cached')));
        const gone = async (...keys: string[]) =>
          until(
            async () => (await client.exists(...keys.map((k) => setup.prefix + k))) === 0,
            15_000,
            `keys to be invalidated: ${keys.join(', ')}`,
            () => worker.output().split('\n').slice(-30).join('\n'),
          );

        const insertKeys = ['item:1', `weird:it's "quoted"`, 'uni:Ключ-ü', `owner:Ann 'the' "First"`];
        await seed(...insertKeys, 'unrelated');
        await sql(`INSERT INTO ${items} VALUES (1, $1, $2, 1)`, [`it's "quoted"`, 'Ключ-ü']);
        await gone(...insertKeys);

        // Moving the item to the other owner: the lookup runs for both, with the value bound as a parameter.
        const updateKeys = ['item:1', `weird:it's "quoted"`, `weird:new 'v'`, `owner:Ann 'the' "First"`, 'owner:Bøb; DROP TABLE x --'];
        await seed(...updateKeys);
        await sql(`UPDATE ${items} SET "Weird ""Col""" = $1, "Owner Id" = 2 WHERE "Id" = 1`, [`new 'v'`]);
        await gone(...updateKeys);

        await seed('owner:Bøb; DROP TABLE x --', 'owner:Robert');
        await sql(`UPDATE ${owners} SET "Näme 'n'" = 'Robert' WHERE "Id" = 2`);
        await gone('owner:Bøb; DROP TABLE x --', 'owner:Robert');

        await seed('item:1', 'uni:Ключ-ü');
        await sql(`DELETE FROM ${items} WHERE "Id" = 1`);
        await gone('item:1', 'uni:Ключ-ü');
        expect(await client.exists(`${setup.prefix}unrelated`)).toBe(1);
        expect(await client.xlen(`${setup.prefix}cdc-invalidator:dead-letters`)).toBe(0);
      } finally {
        client.disconnect();
      }
      // The owners table still exists: the value that looks like SQL was data, never code.
      expect(await sql(`SELECT count(*)::int AS n FROM ${owners}`)).toEqual([{ n: 2 }]);

      const status = await (await fetch(`http://127.0.0.1:${port}/status`)).text();
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(JSON.parse(status)).toMatchObject({ state: 'running' });
      expect(metrics).toContain('cdc_invalidator_changes_total{table="My \\"Odd\\" Schema.Order Items \'x\'"');
      expectNoSecret(status, '/status');
      expectNoSecret(metrics, '/metrics');
      expect(await stopWorker(worker)).toBe(0);
      expectNoSecret(worker.output(), 'worker log at trace level');
    });
  });

  test('(b, c) PostgreSQL SCRAM: the right password streams, a wrong one stops with exit 1 and a clear message; no password is ever printed', async () => {
    const db = await ownedDatabase(WORKER_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY, email text)`, ['public.users'], []);
    const rules = `  - table: users\n    invalidate: ["user:{id}"]\n`;
    const redisUrl = redis.url({ user: REDIS_USER, password: REDIS_PASSWORD });

    await scenario('pg_hba asks the worker role for a SCRAM password (no password is refused)', async () => {
      const noPassword = new pg.Client({ connectionString: `postgres://${WORKER_ROLE}@127.0.0.1:${pgServer.port}/${db.name}` });
      await expect(noPassword.connect()).rejects.toThrow(/password/);
      await noPassword.end().catch(() => undefined);
    });

    await scenario('SCRAM role with the right password: run streams and invalidates; trace log, /status, /metrics hold no password', async () => {
      const setup = writeSetup({ url: passwordUrl(pgServer, WORKER_ROLE, PG_PASSWORD, db.name), redisUrl, rules });
      const { worker, port } = await startWorker(setup.configPath);
      const client = await redisClient();
      try {
        await client.set(`${setup.prefix}user:1`, 'cached');
        await pgServer.query(`INSERT INTO public.users VALUES (1, 'a@x.io')`, [], db.name);
        await waitFor(async () => (await client.exists(`${setup.prefix}user:1`)) === 0, { timeoutMs: 15_000, message: 'user:1 not invalidated' });
      } finally {
        client.disconnect();
      }
      const [auth] = await pgServer.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND datname = $2`,
        [WORKER_ROLE, db.name],
      );
      expect(auth!['n']).toBeGreaterThan(0);
      for (const path of ['/status', '/metrics', '/readyz', '/healthz']) {
        expectNoSecret(await (await fetch(`http://127.0.0.1:${port}${path}`)).text(), path);
      }
      expect(await stopWorker(worker)).toBe(0);
      expectNoSecret(worker.output(), 'worker log at trace level');
    });

    await scenario('SCRAM role with a wrong password: run exits 1 with "password authentication failed", check exits 1; neither prints a password', async () => {
      const setup = writeSetup({ url: passwordUrl(pgServer, WORKER_ROLE, WRONG_PASSWORD, db.name), redisUrl, rules });
      const run = await runBinary(['run', '--config', setup.configPath], { LOG_LEVEL: 'trace' }, { timeoutMs: 45_000 });
      expect(run.code, run.output).toBe(1);
      expect(run.output).toContain(`password authentication failed for user \\"${WORKER_ROLE}\\"`);
      expectNoSecret(run.output, 'run with a wrong password');
      const check = await runBinary(['check', '--config', setup.configPath]);
      expect(check.code, check.output).toBe(1);
      expect(check.output).toMatch(/FAIL .*password authentication failed/);
      expectNoSecret(check.output, 'check with a wrong password');
      // explain connects only for lookups: a rule with one makes it use the wrong password too.
      const withLookup = writeSetup({
        url: passwordUrl(pgServer, WORKER_ROLE, WRONG_PASSWORD, db.name),
        redisUrl,
        rules: `  - table: users\n    lookup:\n      u:\n        sql: "SELECT email FROM public.users WHERE id = $1"\n        params: [id]\n    invalidate: ["user:{u.email}"]\n`,
      });
      const explain = await runBinary(['explain', '--config', withLookup.configPath, '--table', 'users', '--op', 'insert', '--after', '{"id": 1}']);
      expect(explain.output).toContain('password authentication failed');
      expectNoSecret(explain.output, 'explain with a wrong password');
    });

    await scenario('PostgreSQL unreachable with a password in the URL: run retries (trace log) and check fails, neither prints it', async () => {
      const closed = await freePort();
      const setup = writeSetup({
        url: `postgres://${WORKER_ROLE}:${encodeURIComponent(PG_PASSWORD)}@127.0.0.1:${closed}/${db.name}`,
        redisUrl,
        rules,
      });
      const worker = spawnCli(['run', '--config', setup.configPath], { LOG_LEVEL: 'trace' });
      workers.push(worker);
      await until(() => worker.output().includes('database not reachable; retrying setup'), 20_000, 'a retry to be logged', () => worker.output());
      await new Promise((r) => setTimeout(r, 1_500));
      const code = await stopWorker(worker);
      expect([0, 1]).toContain(code);
      expectNoSecret(worker.output(), 'run against an unreachable database');
      const check = await runBinary(['check', '--config', setup.configPath]);
      expect(check.code, check.output).toBe(1);
      expect(check.output).toMatch(/FAIL .*refused/);
      expectNoSecret(check.output, 'check against an unreachable database');
    });
  });

  test('(b, c) Redis AUTH: requirepass and ACL users work, a wrong password is reported and never printed', async () => {
    const db = await ownedDatabase(WORKER_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
    const rules = `  - table: users\n    invalidate: ["user:{id}"]\n`;
    const pgUrl = passwordUrl(pgServer, WORKER_ROLE, PG_PASSWORD, db.name);

    await scenario('Redis requirepass (default user) and ACL user with the right password: check passes', async () => {
      for (const redisUrl of [redis.url({ password: REDIS_DEFAULT_PASSWORD }), redis.url({ user: REDIS_USER, password: REDIS_PASSWORD })]) {
        const setup = writeSetup({ url: pgUrl, redisUrl, rules });
        const check = await runBinary(['check', '--config', setup.configPath]);
        expect(check.code, check.output).toBe(0);
        expect(check.output).toMatch(/ok +redis 127\.0\.0\.1:\d+: writable/);
        expectNoSecret(check.output, 'check with Redis AUTH');
      }
    });

    await scenario('Redis without or with a wrong password: check exits 1 naming authentication', async () => {
      for (const redisUrl of [redis.url(), redis.url({ user: REDIS_USER, password: WRONG_PASSWORD }), redis.url({ password: WRONG_PASSWORD })]) {
        const setup = writeSetup({ url: pgUrl, redisUrl, rules });
        const check = await runBinary(['check', '--config', setup.configPath]);
        expect(check.code, check.output).toBe(1);
        expect(check.output).toMatch(/FAIL +redis .*(WRONGPASS|NOAUTH|invalid username-password|[Aa]uthentication)/);
        expectNoSecret(check.output, 'check with a wrong Redis password');
      }
    });

    await scenario('run with a wrong Redis password: not ready, the cause logged at trace level without the password', async () => {
      const setup = writeSetup({ url: pgUrl, redisUrl: redis.url({ user: REDIS_USER, password: WRONG_PASSWORD }), rules });
      const worker = spawnCli(['run', '--config', setup.configPath], { LOG_LEVEL: 'trace' });
      workers.push(worker);
      await until(
        () => /WRONGPASS|invalid username-password/.test(worker.output()),
        20_000,
        'the Redis authentication failure to be logged',
        () => worker.output(),
      );
      const listening = worker.output().split('\n').find((l) => l.includes('"http listening"'));
      if (listening !== undefined && worker.child.exitCode === null) {
        const port = (JSON.parse(listening) as { port: number }).port;
        const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
        expect(ready.status).toBe(503);
        for (const path of ['/status', '/metrics', '/readyz']) {
          expectNoSecret(await (await fetch(`http://127.0.0.1:${port}${path}`)).text(), path);
        }
      }
      await stopWorker(worker);
      expectNoSecret(worker.output(), 'run with a wrong Redis password (trace log)');
    });
  });

  test('(c) Redis AUTH failure at the default log level: the log says authentication failed, not only "connection closed"', async () => {
    await scenario('run with a wrong Redis password at LOG_LEVEL=info names the authentication failure', async () => {
      const db = await ownedDatabase(WORKER_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
      const setup = writeSetup({
        url: passwordUrl(pgServer, WORKER_ROLE, PG_PASSWORD, db.name),
        redisUrl: redis.url({ user: REDIS_USER, password: WRONG_PASSWORD }),
        rules: `  - table: users\n    invalidate: ["user:{id}"]\n`,
      });
      const worker = spawnCli(['run', '--config', setup.configPath], { LOG_LEVEL: 'info' });
      workers.push(worker);
      await until(() => worker.output().includes('redis not reachable; retrying'), 20_000, 'a Redis retry to be logged', () => worker.output());
      await new Promise((r) => setTimeout(r, 1_000));
      await stopWorker(worker);
      expectNoSecret(worker.output(), 'run with a wrong Redis password (info log)');
      expect(worker.output(), 'the info-level log should name the Redis authentication failure').toMatch(
        /WRONGPASS|invalid username-password|[Aa]uthentication/,
      );
    });
  });

  test('(c) TLS: PostgreSQL with sslmode=verify-full and Redis over rediss:// stream end to end, verified in pg_stat_ssl', async () => {
    await scenario('PostgreSQL TLS (sslmode=verify-full, sslrootcert) for every connection of the worker, checked in pg_stat_ssl; Redis over rediss:// (NODE_EXTRA_CA_CERTS)', async () => {
      const db = await ownedDatabase(TLS_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
      const setup = writeSetup({
        url: passwordUrl(pgServer, TLS_ROLE, PG_TLS_PASSWORD, db.name, `sslmode=verify-full&sslrootcert=${encodeURIComponent(cert.certFile)}`),
        redisUrl: redis.url({ user: REDIS_USER, password: REDIS_PASSWORD, tls: true }),
        rules: `  - table: users\n    invalidate: ["user:{id}"]\n`,
      });
      const env = { NODE_EXTRA_CA_CERTS: cert.certFile };
      const check = await runBinary(['check', '--config', setup.configPath], env);
      expect(check.code, check.output).toBe(0);
      expectNoSecret(check.output, 'check over TLS');

      const { worker } = await startWorker(setup.configPath, env);
      await assertTls(setup.slot, db.name);
      const client = await redisClient();
      try {
        await client.set(`${setup.prefix}user:5`, 'cached');
        await pgServer.query(`INSERT INTO public.users VALUES (5)`, [], db.name);
        await waitFor(async () => (await client.exists(`${setup.prefix}user:5`)) === 0, { timeoutMs: 15_000, message: 'user:5 not invalidated over TLS' });
      } finally {
        client.disconnect();
      }
      expect(await stopWorker(worker)).toBe(0);
      expectNoSecret(worker.output(), 'worker log over TLS');
    });
  });

  test('(c) TLS: a role that pg_hba.conf admits only over TLS is refused with sslmode=disable: exit 1, clear message, no password', async () => {
    await scenario('TLS-only role with sslmode=disable: run exits 1 naming pg_hba.conf and "no encryption"; check fails the same way', async () => {
      const db = await ownedDatabase(TLS_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
      const setup = writeSetup({
        url: passwordUrl(pgServer, TLS_ROLE, PG_TLS_PASSWORD, db.name, 'sslmode=disable'),
        redisUrl: redis.url({ user: REDIS_USER, password: REDIS_PASSWORD }),
        rules: `  - table: users\n    invalidate: ["user:{id}"]\n`,
      });
      const run = await runBinary(['run', '--config', setup.configPath], { LOG_LEVEL: 'trace' }, { timeoutMs: 45_000 });
      expect(run.code, run.output).toBe(1);
      expect(run.output).toMatch(/pg_hba\.conf .*no encryption/);
      expectNoSecret(run.output, 'run refused by pg_hba.conf');
      const check = await runBinary(['check', '--config', setup.configPath]);
      expect(check.code, check.output).toBe(1);
      expect(check.output).toMatch(/FAIL .*no encryption/);
      expectNoSecret(check.output, 'check refused by pg_hba.conf');
    });
  });

  test('(c) TLS: uselibpqcompat=true&sslmode=require encrypts without verifying the certificate', async () => {
    await scenario('PostgreSQL uselibpqcompat=true&sslmode=require against a self-signed certificate: TLS in pg_stat_ssl', async () => {
      const db = await ownedDatabase(TLS_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
      const setup = writeSetup({
        url: passwordUrl(pgServer, TLS_ROLE, PG_TLS_PASSWORD, db.name, 'uselibpqcompat=true&sslmode=require'),
        redisUrl: redis.url({ user: REDIS_USER, password: REDIS_PASSWORD }),
        rules: `  - table: users\n    invalidate: ["user:{id}"]\n`,
      });
      const check = await runBinary(['check', '--config', setup.configPath]);
      expect(check.code, check.output).toBe(0);
      expectNoSecret(check.output, 'check with uselibpqcompat=true&sslmode=require');
      const { worker } = await startWorker(setup.configPath);
      await assertTls(setup.slot, db.name);
      expect(await stopWorker(worker)).toBe(0);
      expectNoSecret(worker.output(), 'worker log with uselibpqcompat=true&sslmode=require');
    });
  });

  test('(c) TLS: sslmode=require encrypts without verifying the certificate, as in libpq', async () => {
    await scenario('PostgreSQL sslmode=require against a self-signed certificate (libpq semantics: encrypt, no verification)', async () => {
      const db = await ownedDatabase(TLS_ROLE, `CREATE TABLE public.users (id int PRIMARY KEY)`, ['public.users'], []);
      const setup = writeSetup({
        url: passwordUrl(pgServer, TLS_ROLE, PG_TLS_PASSWORD, db.name, 'sslmode=require'),
        redisUrl: redis.url({ user: REDIS_USER, password: REDIS_PASSWORD }),
        rules: `  - table: users\n    invalidate: ["user:{id}"]\n`,
      });
      const check = await runBinary(['check', '--config', setup.configPath]);
      expectNoSecret(check.output, 'check with sslmode=require');
      // Soft: the run below shows its own failure too.
      expect.soft(check.code, check.output).toBe(0);
      const { worker } = await startWorker(setup.configPath);
      await assertTls(setup.slot, db.name);
      expect(await stopWorker(worker)).toBe(0);
      expectNoSecret(worker.output(), 'worker log with sslmode=require');
    });
  });
});

/** The slot's walsender and the worker's other connections (heartbeat: application_name cdc-invalidator) use TLS. */
async function assertTls(slot: string, database: string): Promise<void> {
  const [walsender] = await pgServer.query<{ ssl: boolean; usename: string }>(
    `SELECT s.ssl, a.usename FROM pg_replication_slots r
       JOIN pg_stat_ssl s ON s.pid = r.active_pid JOIN pg_stat_activity a ON a.pid = r.active_pid
      WHERE r.slot_name = $1`,
    [slot],
  );
  expect(walsender).toEqual({ ssl: true, usename: TLS_ROLE });
  await waitFor(
    async () => {
      const rows = await pgServer.query<{ ssl: boolean }>(
        `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name = 'cdc-invalidator' AND a.datname = $1`,
        [database],
      );
      return rows.length > 0 && rows.every((r) => r.ssl);
    },
    { timeoutMs: 10_000, intervalMs: 100, message: 'no TLS connection with application_name cdc-invalidator' },
  );
  const [plain] = await pgServer.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1 AND NOT s.ssl`,
    [TLS_ROLE],
  );
  expect(plain!.n).toBe(0);
}
