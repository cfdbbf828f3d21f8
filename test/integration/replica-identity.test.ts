import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { RulesMismatchError } from '../../src/errors.js';
import { servicesMissing } from '../harness/services.js';
import { createScenario, type Scenario } from './scenario.js';

let scenario: Scenario | undefined;
afterEach(async () => {
  await scenario?.cleanup();
  scenario = undefined;
});

const identityOf = async (s: Scenario, table: string) =>
  (await s.sql<{ i: string }>(`SELECT relreplident::text AS i FROM pg_class WHERE oid = '${table}'::regclass`))[0]!.i;
const published = async (s: Scenario) =>
  (await s.sql<{ t: string }>(`SELECT tablename AS t FROM pg_publication_tables WHERE pubname = '${s.publication}' ORDER BY 1`)).map((r) => r.t);

describe.skipIf(servicesMissing('postgres', 'redis'))('replica identity at start', () => {
  it('refuses a rule whose old-row keys the identity cannot send, with the fix, before touching anything', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}", "user:email:{email}"]\n`,
    });
    const err = await scenario.startWorker().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RulesMismatchError);
    const refusal = (err as RulesMismatchError).refusals.join('\n');
    expect(refusal).toContain('"user:email:{email}" from old rows');
    expect(refusal).toContain('ALTER TABLE public.users REPLICA IDENTITY FULL;');
    expect(await published(scenario)).toEqual([]);
    expect(await identityOf(scenario, 'public.users')).toBe('d');
  });

  it('never publishes a table without a replica identity: the application can still update it', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.events (id int, kind text); INSERT INTO public.events VALUES (1, 'a');`,
      rules: `\n  - table: events\n    invalidate: ["event:{id}"]\n`,
    });
    const err = await scenario.startWorker().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RulesMismatchError);
    expect((err as RulesMismatchError).refusals.join('\n')).toMatch(/no replica identity.*ALTER TABLE public\.events REPLICA IDENTITY FULL;/);
    expect(await published(scenario)).toEqual([]);
    await scenario.sql(`UPDATE events SET kind = 'b' WHERE id = 1`);
    await scenario.sql(`DELETE FROM events WHERE id = 1`);
  });

  it('names every column a rule uses that the table lacks, with its place in the mapping', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL); ALTER TABLE public.comments REPLICA IDENTITY FULL;`,
      rules: `
  - table: comments
    when:
      changed: [user_idd]
    invalidate: ["comment:{id}", "comments:user:{usr_id}"]
`,
    });
    const err = await scenario.startWorker().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(RulesMismatchError);
    const problems = (err as RulesMismatchError).problems;
    expect(problems.map((p) => p.path)).toEqual([
      ['rules', 0, 'invalidate', 1],
      ['rules', 0, 'when', 'changed', 0],
    ]);
    expect(problems[0]!.message).toContain('did you mean "user_id"?');
    expect(problems[0]!.message).toContain('its columns are id, user_id');
    expect(await published(scenario)).toEqual([]);
  });

  it('source.replicaIdentity: full never queues the application behind its ALTER TABLE: it retries until the lock is free', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}", "user:email:{email}"]\n`,
    });
    const s = scenario;
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync(s.configPath, readFileSync(s.configPath, 'utf8').replace('  kind: postgres\n', '  kind: postgres\n  replicaIdentity: full\n'));
    // A long transaction holds a lock that ALTER TABLE must wait for.
    const holder = new pg.Client({ connectionString: s.db.url });
    await holder.connect();
    try {
      await holder.query('BEGIN; LOCK TABLE users IN ACCESS SHARE MODE');
      const started = s.startWorker();
      // Meanwhile the application's reads and writes go on (they would queue behind a waiting ALTER).
      for (let i = 0; i < 3; i++) {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        await s.sql(`INSERT INTO users VALUES (${i + 1}, 'u${i}@x.io')`);
        expect(await s.sql('SELECT 1 FROM users')).toHaveLength(i + 1);
      }
      expect(await identityOf(s, 'public.users')).toBe('d');
      await holder.query('COMMIT');
      await started;
    } finally {
      await holder.end();
    }
    expect(await identityOf(s, 'public.users')).toBe('f');
  });

  it('source.replicaIdentity: full sets FULL where the rules need it, and the old keys go', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);
               CREATE TABLE public.events (id int, kind text);
               CREATE TABLE public.tags (id int PRIMARY KEY, name text);
               INSERT INTO public.users VALUES (1, 'a@x.io'); INSERT INTO public.events VALUES (1, 'a');`,
      rules: `
  - table: users
    invalidate: ["user:{id}", "user:email:{email}"]
  - table: events
    invalidate: ["events:{kind}"]
  - table: tags
    invalidate: ["tag:{id}"]
`,
      config: 'consistency:\n  visibility: always\n',
    });
    const s = scenario;
    // The scenario's config is extended in place: the worker sets the identity itself.
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync(s.configPath, readFileSync(s.configPath, 'utf8').replace('  kind: postgres\n', '  kind: postgres\n  replicaIdentity: full\n'));
    await s.startWorker();
    expect(await identityOf(s, 'public.users')).toBe('f');
    expect(await identityOf(s, 'public.events')).toBe('f');
    // Keys from the primary key alone need nothing more.
    expect(await identityOf(s, 'public.tags')).toBe('d');
    await s.seed('user:1', 'user:email:a@x.io', 'events:a');
    await s.sql(`UPDATE users SET email = 'b@x.io' WHERE id = 1`);
    await s.sql(`DELETE FROM events WHERE id = 1`);
    await s.barrier();
    expect(await s.exists('user:email:a@x.io')).toBe(false);
    expect(await s.exists('events:a')).toBe(false);
  });
});
