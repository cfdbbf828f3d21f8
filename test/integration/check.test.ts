// `cdc-invalidator check` against real PostgreSQL and Redis, run as the built binary.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../e2e/worker-process.js';
import { freePort } from '../harness/free-port.js';
import { PostgresServer } from '../harness/postgres.js';
import { createTestDatabase, servicesMissing, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

interface Setup {
  url: string;
  redisUrl: string;
  rules: string;
  publication?: string;
}

/** A config file and one mapping file in a fresh folder; returns the config's path. */
function writeConfig(setup: Setup): string {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-check-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'mappings'));
  writeFileSync(join(dir, 'mappings', 'app.yaml'), `rules:\n${setup.rules}`);
  const configPath = join(dir, 'cdc-invalidator.yaml');
  writeFileSync(
    configPath,
    `source:
  kind: postgres
  url: "${setup.url}"
  slot: ${uniqueName('slot')}
  publication: ${setup.publication ?? uniqueName('pub')}
redis:
  url: "${setup.redisUrl}"
  keyPrefix: "${uniqueName('k')}:"
mappings: ./mappings
`,
  );
  return configPath;
}

/** The report's lines, trailing spaces kept out. */
const lines = (output: string) => output.split('\n').map((l) => l.trimEnd());

const GOOD_SCHEMA = `
  CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL, email text);
  ALTER TABLE public.users REPLICA IDENTITY FULL;
  CREATE TABLE public."My Table" ("Id" int PRIMARY KEY, "Full Name" text);
  ALTER TABLE public."My Table" REPLICA IDENTITY FULL;
  CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL, content text);
`;

const GOOD_RULES = `
  - table: users
    invalidate: ["user:{id}", "user:email:{email}"]
  - table: public.My Table
    invalidate: ['my:{Id}:{Full Name}']
  - table: comments
    lookup:
      author:
        sql: "SELECT email FROM public.users WHERE id = $1"
        params: [user_id]
    invalidate: ["comment:{id}"]
    bump: ["comments:by:{author.email}"]
    fallback:
      bump: ["comments:version"]
`;

describe.skipIf(servicesMissing('postgres', 'redis'))('cdc-invalidator check', () => {
  it('passes a well-configured database and Redis, quoted names included', async () => {
    const pg = await sharedPostgres();
    const redis = await sharedRedis();
    const db = await createTestDatabase('check_ok');
    await pg.query(GOOD_SCHEMA, [], db.name);
    const configPath = writeConfig({ url: db.url, redisUrl: redis.url(), rules: GOOD_RULES });

    const { code, output } = await runCli(['check', '--config', configPath]);
    expect(code, output).toBe(0);
    const out = lines(output);
    expect(out).toContain('ok    wal_level is logical');
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}role "postgres" is a superuser: replication connection opened$/));
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}slot "slot_\w+" does not exist yet: the worker creates it at start/));
    expect(out).toContainEqual(
      expect.stringMatching(/^ok {4}publication "pub_\w+" does not exist yet: the worker creates it at start, FOR TABLE public.users, public."My Table" and public.comments$/),
    );
    expect(out).toContain('ok    table public.users: columns id and email exist; REPLICA IDENTITY FULL');
    expect(out).toContain('ok    table public."My Table": columns Id and Full Name exist; REPLICA IDENTITY FULL');
    // comments: the lookup's parameter is not a key column, but the rule has a fallback.
    expect(out).toContainEqual(expect.stringMatching(/^warn {2}table public.comments: .* renders "comments:by:\{author.email\}" from old rows/));
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}mappings\/app.yaml#rules\[2\] lookup "author": the query plans/));
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}redis 127.0.0.1:\d+: reachable \(Redis \d+\.\d+/));
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}redis 127.0.0.1:\d+: writable \(SET and DEL of "k_\w+:cdc-invalidator:check:[0-9a-f]+"\)$/));
    expect(out).toContainEqual(expect.stringMatching(/^ok {4}redis 127.0.0.1:\d+: runs Lua scripts/));
    expect(out).not.toContainEqual(expect.stringMatching(/^FAIL/));
    expect(out).toContainEqual(expect.stringMatching(/^\d+ ok, \d+ warnings?, 0 problems: ready to run$/));
    // The probe key is gone, and check created nothing in the database.
    const client = new Redis(redis.url());
    try {
      expect(await client.keys('*cdc-invalidator:check:*')).toEqual([]);
    } finally {
      client.disconnect();
    }
    expect(await pg.query('SELECT 1 FROM pg_replication_slots WHERE database = $1', [db.name])).toEqual([]);
    expect(await pg.query('SELECT 1 FROM pg_publication', [], db.name)).toEqual([]);
  });

  it('fails a misconfigured database with a line and a fix per problem', async () => {
    const pg = await sharedPostgres();
    const redis = await sharedRedis();
    const db = await createTestDatabase('check_bad');
    const publication = uniqueName('pub');
    const role = uniqueName('limited');
    await pg.query(
      `CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL, email text);
       CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL, content text);
       ALTER TABLE public.comments REPLICA IDENTITY FULL;
       CREATE PUBLICATION ${publication} FOR TABLE public.users;
       CREATE ROLE ${role} LOGIN REPLICATION;`,
      [],
      db.name,
    );
    const rules = `
  - table: users
    invalidate: ["user:{id}", "user:email:{email}"]
  - table: comments
    invalidate: ["comment:{id}", "comments:user:{usr_id}"]
`;
    // A role that owns neither the publication nor the tables cannot add the missing table.
    const url = db.url.replace('postgres@', `${role}@`);
    const configPath = writeConfig({ url, redisUrl: redis.url(), rules, publication });

    const { code, output } = await runCli(['check', '--config', configPath]);
    expect(code, output).toBe(1);
    const out = lines(output);
    const failure = (pattern: RegExp) => {
      const i = out.findIndex((l) => pattern.test(l));
      expect(i, `${pattern} in\n${output}`).toBeGreaterThanOrEqual(0);
      return [out[i], out[i + 1]];
    };
    expect(failure(/^FAIL {2}publication "pub_\w+" does not include public.comments/)).toEqual([
      `FAIL  publication "${publication}" does not include public.comments, and role "${role}" cannot add it: it does not own ` +
        `the publication (owner "postgres"); it does not own public.comments (owner "postgres"). The worker would stop at start`,
      `      fix: as the owner of the publication and the tables: ALTER PUBLICATION ${publication} ADD TABLE public.comments;`,
    ]);
    expect(failure(/^FAIL {2}table public.users: mappings/)).toEqual([
      'FAIL  table public.users: mappings/app.yaml#rules[0] renders "user:email:{email}" from old rows, but REPLICA IDENTITY ' +
        'DEFAULT sends only the primary key (id): "email" is unknown there, so its updates and deletes could not be invalidated: run refuses to start',
      '      fix: ALTER TABLE public.users REPLICA IDENTITY FULL;  (or set source.replicaIdentity: full, or give the rule a fallback)',
    ]);
    expect(failure(/^FAIL {2}table public.comments: column "usr_id"/)).toEqual([
      'FAIL  table public.comments: column "usr_id" used by mappings/app.yaml#rules[1] "comments:user:{usr_id}" does not exist',
      '      fix: correct mappings/app.yaml#rules[1]: did you mean "user_id"? (the columns of public.comments are id, user_id, content)',
    ]);
    expect(out).toContainEqual(expect.stringMatching(/^\d+ ok, \d+ warnings?, 3 problems: fix the problems above before running the worker$/));

    // The fixes work: run them, and check passes.
    await pg.query(
      `ALTER TABLE public.users REPLICA IDENTITY FULL; ALTER PUBLICATION ${publication} ADD TABLE public.comments;`,
      [],
      db.name,
    );
    writeFileSync(join(configPath, '..', 'mappings', 'app.yaml'), `rules:\n${rules.replace('usr_id', 'user_id')}`);
    const after = await runCli(['check', '--config', configPath]);
    expect(after.code, after.output).toBe(0);
    expect(lines(after.output)).toContain(`ok    publication "${publication}" covers the 2 mapped tables`);
  });

  it('warns, and passes, when the worker will add a missing table to the publication itself', async () => {
    const pg = await sharedPostgres();
    const redis = await sharedRedis();
    const db = await createTestDatabase('check_add');
    const publication = uniqueName('pub');
    await pg.query(
      `CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY);
       CREATE PUBLICATION ${publication} FOR TABLE public.a;`,
      [],
      db.name,
    );
    const rules = `
  - table: a
    invalidate: ["a:{id}"]
  - table: b
    invalidate: ["b:{id}"]
`;
    const configPath = writeConfig({ url: db.url, redisUrl: redis.url(), rules, publication });
    const { code, output } = await runCli(['check', '--config', configPath]);
    expect(code, output).toBe(0);
    expect(lines(output)).toEqual(
      expect.arrayContaining([
        `warn  publication "${publication}" does not include public.b: the worker adds it at start`,
        `      fix: ALTER PUBLICATION ${publication} ADD TABLE public.b;  (to add now)`,
      ]),
    );
  });

  it('fails wal_level = replica with the statement to run', async () => {
    const server = await PostgresServer.start({ settings: { wal_level: 'replica' } });
    try {
      const redis = await sharedRedis();
      const name = uniqueName('check_replica');
      const url = await server.createDatabase(name);
      await server.query('CREATE TABLE public.users (id int PRIMARY KEY)', [], name);
      const configPath = writeConfig({ url, redisUrl: redis.url(), rules: '  - table: users\n    invalidate: ["user:{id}"]\n' });
      const { code, output } = await runCli(['check', '--config', configPath]);
      expect(code, output).toBe(1);
      const out = lines(output);
      const i = out.indexOf('FAIL  wal_level is replica: logical replication needs logical');
      expect(i, output).toBeGreaterThanOrEqual(0);
      expect(out[i + 1]).toBe('      fix: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL');
    } finally {
      await server.destroy();
    }
  });

  it('names an unreachable Redis and database, and never prints a password', async () => {
    const pg = await sharedPostgres();
    const db = await createTestDatabase('check_down');
    await pg.query('CREATE TABLE public.users (id int PRIMARY KEY)', [], db.name);
    const redisPort = await freePort();
    const databasePort = await freePort();
    const rules = '  - table: users\n    invalidate: ["user:{id}"]\n';

    // Trust authentication ignores the password, so the database is reached while Redis is not.
    const withPassword = db.url.replace('postgres@', 'postgres:Db-Secret-123@');
    const redisUrl = `redis://:Redis-Secret-456@127.0.0.1:${redisPort}`;
    const first = await runCli(['check', '--config', writeConfig({ url: withPassword, redisUrl, rules })]);
    expect(first.code, first.output).toBe(1);
    expect(lines(first.output)).toEqual(
      expect.arrayContaining([
        `FAIL  redis 127.0.0.1:${redisPort}: cannot connect: connection refused`,
        '      fix: start Redis, or correct the host and port in redis.url',
      ]),
    );
    expect(first.output).toMatch(/^ok {4}database postgres@127.0.0.1:\d+\/check_down_\w+: connected/m);

    const unreachable = `postgres://postgres:Db-Secret-123@127.0.0.1:${databasePort}/app`;
    const second = await runCli(['check', '--config', writeConfig({ url: unreachable, redisUrl, rules })]);
    expect(second.code, second.output).toBe(1);
    expect(lines(second.output)).toEqual(
      expect.arrayContaining([
        `FAIL  database postgres@127.0.0.1:${databasePort}/app: cannot connect: connection refused (the other database checks need a connection)`,
        '      fix: start PostgreSQL, or correct the host and port in source.url',
      ]),
    );
    for (const output of [first.output, second.output]) {
      expect(output).not.toContain('Secret');
    }
  });

  it('exits 2 for an invalid config', async () => {
    const redisUrl = 'redis://127.0.0.1:6379';
    const configPath = writeConfig({ url: 'postgres://x@127.0.0.1:1/x', redisUrl, rules: '  - table: users\n    invalidte: ["u:{id}"]\n' });
    const { code, output } = await runCli(['check', '--config', configPath]);
    expect(code, output).toBe(2);
    expect(output).toMatch(/rules\[0\]\.invalidte: unknown key "invalidte"/);
  });
});
