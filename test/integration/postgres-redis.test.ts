import { parseLsn } from '../../src/core/lsn.js';
import { afterEach, describe, expect, it } from 'vitest';
import { servicesMissing } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from './scenario.js';

const USERS_SCHEMA = `
  CREATE TABLE public.users (id int PRIMARY KEY, name text NOT NULL, email text, bio text);
  ALTER TABLE public.users REPLICA IDENTITY FULL;
  CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL, content text NOT NULL, flag boolean DEFAULT false);
  ALTER TABLE public.comments REPLICA IDENTITY FULL;
`;

const USERS_RULES = `
  - table: public.users
    invalidate:
      - "user:{id}"
      - "user:email:{email}"
      - "comments:name={name}:email={email}"
    bump: ["users:version"]
  - table: comments
    when:
      changed: [content, user_id]
    invalidate: ["comment:{id}", "comments:user:{user_id}"]
`;

let scenario: Scenario | undefined;
afterEach(async () => {
  await scenario?.cleanup();
  scenario = undefined;
});

async function usersScenario(): Promise<Scenario> {
  scenario = await createScenario({ schema: USERS_SCHEMA, rules: USERS_RULES });
  return scenario;
}

describe.skipIf(servicesMissing('postgres', 'redis'))('postgres to redis', () => {
  it('invalidates the keys of an inserted row', async () => {
    const s = await usersScenario();
    await s.startWorker();
    await s.seed('user:1', 'user:email:a@x.io', 'comments:name=Ann:email=a@x.io', 'user:2');
    await s.sql(`INSERT INTO users (id, name, email) VALUES (1, 'Ann', 'a@x.io')`);
    await s.barrier();
    expect(await s.exists('user:1')).toBe(false);
    expect(await s.exists('user:email:a@x.io')).toBe(false);
    expect(await s.exists('comments:name=Ann:email=a@x.io')).toBe(false);
    expect(await s.exists('user:2')).toBe(true);
  });

  it('on update invalidates the keys of the old and the new row', async () => {
    const s = await usersScenario();
    await s.sql(`INSERT INTO users (id, name, email) VALUES (1, 'Ann', 'a@x.io')`);
    await s.startWorker();
    await s.seed('user:1', 'user:email:a@x.io', 'user:email:b@x.io', 'comments:name=Ann:email=a@x.io', 'comments:name=Ann:email=b@x.io');
    await s.sql(`UPDATE users SET email = 'b@x.io' WHERE id = 1`);
    await s.barrier();
    for (const key of ['user:1', 'user:email:a@x.io', 'user:email:b@x.io', 'comments:name=Ann:email=a@x.io', 'comments:name=Ann:email=b@x.io']) {
      expect(await s.exists(key), key).toBe(false);
    }
  });

  it('on delete invalidates the keys of the old row', async () => {
    const s = await usersScenario();
    await s.sql(`INSERT INTO users (id, name, email) VALUES (7, 'Gil', 'g@x.io')`);
    await s.startWorker();
    await s.seed('user:7', 'user:email:g@x.io');
    await s.sql(`DELETE FROM users WHERE id = 7`);
    await s.barrier();
    expect(await s.exists('user:7')).toBe(false);
    expect(await s.exists('user:email:g@x.io')).toBe(false);
  });

  it('applies every row of a multi-row transaction', async () => {
    const s = await usersScenario();
    await s.startWorker();
    const keys = Array.from({ length: 2000 }, (_, i) => `user:${i}`);
    await s.seed(...keys);
    await s.sql(`INSERT INTO users (id, name, email) SELECT g, 'n' || g, 'e' || g FROM generate_series(0, 1999) g`);
    await s.barrier();
    const left = await s.redis.exists(...keys.map((k) => s.prefix + k));
    expect(left).toBe(0);
  });

  it('renders values in their PostgreSQL text form, whatever the time zone', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.typed (id bigint PRIMARY KEY, at timestamp NOT NULL, atz timestamptz NOT NULL,
                 ok boolean NOT NULL, u uuid NOT NULL, n numeric NOT NULL);
               ALTER TABLE public.typed REPLICA IDENTITY FULL;`,
      rules: `
  - table: typed
    invalidate: ["typed:{id}:{at}:{ok}:{u}:{n}"]
`,
    });
    const s = scenario;
    await s.startWorker();
    const key = 'typed:9007199254740993:2024-02-29 23:59:59.5:true:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11:12.50';
    await s.seed(key);
    await s.sql(
      `INSERT INTO typed VALUES (9007199254740993, '2024-02-29 23:59:59.5', now(), true, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 12.50)`,
    );
    await s.barrier();
    expect(await s.exists(key)).toBe(false);
  });

  it('on a primary key change invalidates the old and the new key (REPLICA IDENTITY DEFAULT)', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.items (id int PRIMARY KEY, label text NOT NULL);`,
      rules: `
  - table: items
    invalidate: ["item:{id}"]
`,
    });
    const s = scenario;
    await s.sql(`INSERT INTO items VALUES (1, 'a')`);
    await s.startWorker();
    await s.seed('item:1', 'item:2');
    await s.sql(`UPDATE items SET id = 2 WHERE id = 1`);
    await s.barrier();
    expect(await s.exists('item:1')).toBe(false);
    expect(await s.exists('item:2')).toBe(false);
  });

  it('ignores updates that touch none of when.changed', async () => {
    const s = await usersScenario();
    await s.sql(`INSERT INTO users VALUES (1, 'Ann', 'a@x.io'); INSERT INTO comments VALUES (10, 1, 'hello')`);
    await s.startWorker();
    await s.seed('comment:10');
    await s.sql(`UPDATE comments SET flag = true WHERE id = 10`);
    await s.barrier();
    expect(await s.exists('comment:10')).toBe(true);
    await s.sql(`UPDATE comments SET content = 'bye' WHERE id = 10`);
    await s.barrier();
    expect(await s.exists('comment:10')).toBe(false);
  });

  it('moves a comment to another user: both users keys go', async () => {
    const s = await usersScenario();
    await s.sql(`INSERT INTO users VALUES (1, 'Ann', 'a@x.io'), (2, 'Bob', 'b@x.io'); INSERT INTO comments VALUES (10, 1, 'hi')`);
    await s.startWorker();
    await s.seed('comments:user:1', 'comments:user:2');
    await s.sql(`UPDATE comments SET user_id = 2 WHERE id = 10`);
    await s.barrier();
    expect(await s.exists('comments:user:1')).toBe(false);
    expect(await s.exists('comments:user:2')).toBe(false);
  });

  it('runs the fallback when an old value is unknown, and dead-letters a rule without one', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.accounts (id int PRIMARY KEY, email text NOT NULL, secret text);
               ALTER TABLE public.accounts REPLICA IDENTITY FULL;`,
      rules: `
  - table: accounts
    invalidate: ["account:{id}", "account:email:{email}"]
    fallback:
      bump: ["accounts:version"]
  - table: accounts
    on: [update]
    invalidate: ["account:secret-holder:{email}"]
`,
    });
    const s = scenario;
    await s.sql(`INSERT INTO accounts VALUES (1, 'a@x.io', 'hunter2')`);
    const { stats } = await s.startWorker();
    // The identity is narrowed while streaming (start refuses a rule without a fallback that
    // DEFAULT cannot serve): from here on the old email is not sent, and nothing guesses it.
    await s.sql(`ALTER TABLE accounts REPLICA IDENTITY DEFAULT`);
    await s.seed('account:1', 'account:email:a@x.io', 'account:email:b@x.io');
    await s.sql(`UPDATE accounts SET email = 'b@x.io' WHERE id = 1`);
    await s.barrier();
    expect(await s.exists('account:1')).toBe(false);
    expect(await s.exists('account:email:b@x.io')).toBe(false);
    expect(await s.exists('account:email:a@x.io')).toBe(true);
    expect(await s.get('accounts:version')).toMatch(/^\d+$/);
    expect(stats.fallbacks).toBe(1);
    const letters = await s.deadLetters();
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ table: 'public.accounts', op: 'update', reason: 'unknown_value', key: '{"id":"1"}' });
    expect(letters[0]!['position']).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    expect(JSON.stringify(letters)).not.toContain('hunter2');
    expect(JSON.stringify(letters)).not.toContain('b@x.io');
    expect(stats.deadLetters).toBe(1);
  });

  // Under REPLICA IDENTITY FULL the old row carries the value and the new row's "unchanged" marker
  // resolves to it; under DEFAULT it is unknown in both rows.
  it('treats an unchanged TOASTed value as unknown', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.docs (id int PRIMARY KEY, title text NOT NULL, body text NOT NULL);
               ALTER TABLE public.docs ALTER COLUMN body SET STORAGE EXTERNAL;`,
      rules: `
  - table: docs
    invalidate: ["doc:{id}:{body}"]
    fallback:
      invalidate: ["docs:all"]
`,
    });
    const s = scenario;
    await s.sql(`INSERT INTO docs VALUES (1, 't', repeat('x', 10000))`);
    const { stats } = await s.startWorker();
    await s.seed('docs:all');
    await s.sql(`UPDATE docs SET title = 't2' WHERE id = 1`);
    await s.barrier();
    expect(await s.exists('docs:all')).toBe(false);
    expect(stats.fallbacks).toBe(1);
  });

  it('turns TRUNCATE into the fallback, or a dead letter without one', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.a (id int PRIMARY KEY); CREATE TABLE public.b (id int PRIMARY KEY);`,
      rules: `
  - table: a
    invalidate: ["a:{id}"]
    fallback:
      invalidate: ["a:all"]
      bump: ["a:version"]
  - table: b
    invalidate: ["b:{id}"]
`,
    });
    const s = scenario;
    await s.sql(`INSERT INTO a VALUES (1); INSERT INTO b VALUES (1)`);
    await s.startWorker();
    await s.seed('a:all');
    await s.sql(`TRUNCATE a, b`);
    await s.barrier();
    expect(await s.exists('a:all')).toBe(false);
    expect(await s.get('a:version')).toMatch(/^\d+$/);
    const letters = await s.deadLetters();
    expect(letters.map((l) => [l['table'], l['op'], l['reason']])).toEqual([['public.b', 'truncate', 'truncate']]);
  });

  it('bumps version keys to the commit LSN and never moves them back on replay', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.first (id int PRIMARY KEY); CREATE TABLE public.second (id int PRIMARY KEY);`,
      rules: `
  - table: first
    bump: ["v"]
  - table: second
    bump: ["v"]
`,
    });
    const s = scenario;
    const a = await s.startWorker();
    await s.sql(`INSERT INTO first VALUES (1)`);
    await s.barrier();
    const v1 = BigInt((await s.get('v'))!);
    await s.sql(`INSERT INTO second VALUES (1)`);
    await s.barrier();
    const v2 = BigInt((await s.get('v'))!);
    expect(v2).toBeGreaterThan(v1);
    // The commit LSN is the version: it must match what Postgres reports for that transaction.
    const [slot] = await s.sql<{ lsn: string }>(`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = $1`, [s.slot]);
    expect(slot).toBeDefined();
    await a.worker.stop();
    // Replay the first change (a second slot created at the start would resend it): simulate with
    // a worker on a fresh slot that is rewound by re-running the same transaction's bump through
    // the sink: it must not lower the stored version.
    const { sink } = await s.startWorker({ slot: `${s.slot}_replay` });
    await sink.apply({ operations: [{ action: 'bump', key: 'v', version: v1 }], deadLetters: [] });
    expect(BigInt((await s.get('v'))!)).toBe(v2);
    // Versions compare exactly past 2^53 and across digit counts.
    await sink.apply({ operations: [{ action: 'bump', key: 'big', version: 99_999_999_999_999_999n }], deadLetters: [] });
    await sink.apply({ operations: [{ action: 'bump', key: 'big', version: 100_000_000_000_000_000n }], deadLetters: [] });
    await sink.apply({ operations: [{ action: 'bump', key: 'big', version: 99_999_999_999_999_998n }], deadLetters: [] });
    expect(await s.get('big')).toBe('100000000000000000');
  });

  it('resumes after Postgres restarts, from the applied position', async () => {
    const s = await usersScenario();
    const { stats } = await s.startWorker();
    await s.sql(`INSERT INTO users VALUES (1, 'Ann', 'a@x.io')`);
    await s.barrier();
    const { sharedPostgres } = await import('../harness/services.js');
    const pg = await sharedPostgres();
    await pg.stop('fast');
    await pg.restart();
    await s.seed('user:2');
    await s.sql(`INSERT INTO users VALUES (2, 'Bob', 'b@x.io')`);
    await waitFor(async () => !(await s.exists('user:2')), { timeoutMs: 30_000, message: 'not invalidated after restart' });
    expect(stats.changes).toBeGreaterThanOrEqual(2);
  });

  it('waits out a Redis outage and applies everything after it', async () => {
    const s = await usersScenario();
    const { stats } = await s.startWorker();
    await s.barrier();
    const { sharedRedis } = await import('../harness/services.js');
    const redis = await sharedRedis();
    await redis.kill();
    for (let i = 0; i < 50; i++) await s.sql(`INSERT INTO users VALUES ($1, 'n', 'e')`, [i]);
    const [{ lsn }] = (await s.sql<{ lsn: string }>(`SELECT pg_current_wal_insert_lsn()::text AS lsn`)) as [{ lsn: string }];
    await waitFor(() => stats.retries > 0, { timeoutMs: 20_000, message: 'no retry counted' });
    // While Redis is down nothing may be confirmed past what it applied.
    const [before] = await s.sql<{ c: string | null }>(`SELECT confirmed_flush_lsn::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [s.slot]);
    await redis.restart();
    await waitFor(async () => (await s.get('users:version')) !== null, { timeoutMs: 30_000, message: 'not applied after Redis came back' });
    const version = BigInt((await s.get('users:version'))!);
    expect(version).toBeGreaterThan(0n);
    // Confirmed while Redis was down: only what came before the 50 inserts, none of which was applied.
    const confirmedDuring = parseLsn(before!.c!);
    expect(confirmedDuring).toBeLessThan(parseLsn(lsn));
    // The version is the last insert's commit position: past what was confirmed then, within the WAL written.
    expect(version).toBeGreaterThan(confirmedDuring);
    expect(version).toBeLessThanOrEqual(parseLsn(lsn));
  });

  it('keeps the slot advancing while mapped tables are idle and other databases write', async () => {
    const s = await usersScenario();
    await s.startWorker();
    await s.barrier();
    const confirmed = async () =>
      BigInt(
        (await s.sql<{ c: string }>(`SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [s.slot]))[0]!.c,
      );
    const { sharedPostgres } = await import('../harness/services.js');
    const pg = await sharedPostgres();
    const other = `other_${s.slot}`;
    await pg.query(`CREATE DATABASE ${other}`);
    await pg.query(`CREATE TABLE churn (id serial PRIMARY KEY, pad text); INSERT INTO churn (pad) SELECT repeat('x', 200) FROM generate_series(1, 5000)`, [], other);
    const [{ lsn }] = (await pg.query<{ lsn: string }>(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS lsn`)) as [{ lsn: string }];
    // The heartbeat (1 s here) gives the walsender a position to report; the idle worker confirms it.
    await waitFor(async () => (await confirmed()) >= BigInt(lsn), { timeoutMs: 20_000, message: 'slot did not advance past the other database\'s WAL' });
    await pg.query(`DROP DATABASE ${other}`);
  });

  it('stores the applied position: it reaches the LSN read after a commit, also when later WAL touches no mapped table', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY); CREATE TABLE public.unmapped (id int);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}"]\n`,
    });
    const s = scenario;
    await s.startWorker();
    const applied = async () => {
      const text = await s.get('cdc-invalidator:applied');
      return text === null ? -1n : parseLsn(text);
    };
    await s.seed('user:1');
    await s.sql(`INSERT INTO users VALUES (1)`);
    const lsn = parseLsn((await s.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l);
    await waitFor(async () => (await applied()) >= lsn, { timeoutMs: 10_000, message: 'applied position did not reach the commit' });
    expect(await s.exists('user:1')).toBe(false);
    // Only unmapped WAL after this: the position advances through keepalives.
    await s.sql(`INSERT INTO unmapped VALUES (1)`);
    const later = parseLsn((await s.sql<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l'))[0]!.l);
    await waitFor(async () => (await applied()) >= later, { timeoutMs: 15_000, message: 'applied position did not advance while idle' });
  });

  it('follows schema changes mid-stream: a dropped column takes the fallback, and works again once added', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.people (id int PRIMARY KEY, name text NOT NULL, nickname text);
               ALTER TABLE public.people REPLICA IDENTITY FULL;`,
      rules: `
  - table: people
    invalidate: ["person:{id}", "person:nick:{nickname}"]
    fallback:
      bump: ["people:version"]
`,
    });
    const s = scenario;
    const { stats } = await s.startWorker();
    await s.seed('person:1', 'person:nick:al');
    await s.sql(`INSERT INTO people VALUES (1, 'a', 'al')`);
    await s.barrier();
    expect(await s.exists('person:1')).toBe(false);
    expect(await s.exists('person:nick:al')).toBe(false);
    expect(stats.fallbacks).toBe(0);
    // Without the column its value is unknown: the fallback runs, nothing crashes.
    await s.sql(`ALTER TABLE people DROP COLUMN nickname`);
    await s.seed('person:1');
    await s.sql(`UPDATE people SET name = 'c' WHERE id = 1`);
    await s.barrier();
    expect(await s.exists('person:1')).toBe(false);
    expect(stats.fallbacks).toBe(1);
    await s.sql(`ALTER TABLE people ADD COLUMN nickname text`);
    await s.seed('person:2', 'person:nick:zed');
    await s.sql(`INSERT INTO people VALUES (2, 'b', 'zed')`);
    await s.barrier();
    expect(await s.exists('person:2')).toBe(false);
    expect(await s.exists('person:nick:zed')).toBe(false);
    expect(stats.fallbacks).toBe(1);
  });

  it('keeps applying the rules of a mapped table renamed while streaming, and after the mapping follows', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.things (id int PRIMARY KEY);`,
      rules: `\n  - table: things\n    invalidate: ["thing:{id}"]\n`,
    });
    const s = scenario;
    const { worker } = await s.startWorker();
    await s.sql(`INSERT INTO things VALUES (1)`);
    await s.barrier();
    await s.sql(`ALTER TABLE things RENAME TO renamed_things`);
    await s.seed('thing:2');
    await s.sql(`INSERT INTO renamed_things VALUES (2)`);
    await s.barrier();
    expect(await s.exists('thing:2')).toBe(false);
    await worker.stop();
    // The mapping updated to the new name: older changes replayed under the old name still match.
    const { readFileSync, writeFileSync, mkdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    mkdirSync(join(s.dir, 'mappings2'));
    writeFileSync(
      join(s.dir, 'mappings2', 'rules.yaml'),
      readFileSync(join(s.dir, 'mappings', 'rules.yaml'), 'utf8').replace('table: things', 'table: renamed_things'),
    );
    const config2 = join(s.dir, 'config2.yaml');
    writeFileSync(config2, readFileSync(s.configPath, 'utf8').replace('mappings: ./mappings', 'mappings: ./mappings2'));
    const second = await s.startWorker({ configPath: config2 });
    await s.seed('thing:3');
    await s.sql(`INSERT INTO renamed_things VALUES (3)`);
    await s.barrier();
    expect(await s.exists('thing:3')).toBe(false);
    expect(second.stats.deadLetters).toBe(0);
  });
});
