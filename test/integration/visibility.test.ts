import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import type { Assembly } from '../../src/main.js';
import { servicesMissing, sharedPostgres } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from './scenario.js';

// A synchronous standby that never answers ("nobody" is not connected): a commit is flushed and
// shipped by the walsender, but its backend waits for the standby and the row stays invisible to
// every other session until that wait is cancelled. This file's Postgres is its own (one per test
// file), so the setting touches no other test.

let scenario: Scenario | undefined;
const writers: pg.Client[] = [];
afterEach(async () => {
  const server = await sharedPostgres();
  await setStandbyNames(server, null);
  for (const w of writers.splice(0)) await w.end().catch(() => undefined);
  await scenario?.cleanup();
  scenario = undefined;
});

async function setStandbyNames(server: Awaited<ReturnType<typeof sharedPostgres>>, names: string | null): Promise<void> {
  await server.query(names === null ? 'ALTER SYSTEM RESET synchronous_standby_names' : `ALTER SYSTEM SET synchronous_standby_names = '${names}'`);
  await server.query('SELECT pg_reload_conf()');
}

/** Ends the writer's wait for the standby (the worker's heartbeat may wait too; it is left alone). */
async function cancelSyncWaits(s: Scenario | undefined): Promise<number> {
  if (s === undefined) return 0;
  const rows = await s.sql<{ n: string }>(
    `SELECT count(pg_cancel_backend(pid))::text AS n FROM pg_stat_activity
      WHERE wait_event = 'SyncRep' AND application_name = 'visibility-writer'`,
  );
  return Number(rows[0]!.n);
}

/** Starts a commit that will wait for the (absent) synchronous standby. */
async function commitWaitingForStandby(s: Scenario, sql: string): Promise<{ done: Promise<unknown> }> {
  const writer = new pg.Client({ connectionString: s.db.url, application_name: 'visibility-writer' } as pg.ClientConfig);
  writer.on('error', () => undefined);
  writers.push(writer);
  await writer.connect();
  const done = writer.query(sql).catch(() => undefined);
  await waitFor(
    async () => (await s.sql(`SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND application_name = 'visibility-writer'`)).length === 1,
    { timeoutMs: 10_000, message: 'the commit did not wait for the standby' },
  );
  return { done };
}

const rowVisible = async (s: Scenario) => (await s.sql(`SELECT 1 FROM users WHERE id = 1`)).length === 1;
const holdingMs = (a: Assembly) => (a.source.status().details['visibility'] as { holdingMs: number | null }).holdingMs;

async function setup(visibility: string): Promise<{ s: Scenario; assembly: Assembly }> {
  scenario = await createScenario({
    schema: `CREATE TABLE public.users (id int PRIMARY KEY, name text);`,
    rules: `\n  - table: users\n    invalidate: ["user:{id}"]\n`,
    config: `consistency:\n  visibility: ${visibility}\n`,
  });
  const s = scenario;
  const assembly = await s.startWorker();
  await s.barrier();
  const server = await sharedPostgres();
  await setStandbyNames(server, 'nobody');
  await waitFor(async () => (await s.sql<{ v: string }>(`SELECT current_setting('synchronous_standby_names') AS v`))[0]!.v === 'nobody', {
    timeoutMs: 5_000,
    message: 'the setting was not reloaded',
  });
  await s.seed('user:1');
  return { s, assembly };
}

describe.skipIf(servicesMissing('postgres', 'redis'))('visibility of commits before invalidating', () => {
  it('auto, with a synchronous standby: holds the invalidation until the commit is visible', async () => {
    const { s, assembly } = await setup('auto');
    const { done } = await commitWaitingForStandby(s, `INSERT INTO users VALUES (1, 'a')`);
    // The worker has the change but holds it, while readers still see no row.
    await waitFor(() => (holdingMs(assembly) ?? 0) > 200, { timeoutMs: 10_000, message: 'the change was not held for visibility' });
    expect(await rowVisible(s)).toBe(false);
    expect(await s.exists('user:1')).toBe(true);
    // The standby wait ends (here: cancelled): the commit becomes visible, then the key goes.
    expect(await cancelSyncWaits(s)).toBe(1);
    await done;
    await waitFor(async () => !(await s.exists('user:1')), { timeoutMs: 10_000, message: 'not invalidated once visible' });
    expect(await rowVisible(s)).toBe(true);
  });

  it('off: the hazard, the key goes while the new row is still invisible to readers', async () => {
    const { s } = await setup('off');
    const { done } = await commitWaitingForStandby(s, `INSERT INTO users VALUES (1, 'a')`);
    await waitFor(async () => !(await s.exists('user:1')), { timeoutMs: 10_000, message: 'not invalidated' });
    // A reader that misses now reads the old state and would cache it for good.
    expect(await rowVisible(s)).toBe(false);
    await cancelSyncWaits(s);
    await done;
  });

  it('consistency.replicas naming a server that is not a replica is refused at start, with the reason', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}"]\n`,
    });
    // The primary itself, listed as a replica by mistake.
    const { appendFileSync } = await import('node:fs');
    appendFileSync(scenario.configPath, `consistency:\n  replicas:\n    - url: "${scenario.db.url}"\n`);
    const err = await scenario.startWorker().then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(/consistency\.replicas: .* is not a replica \(pg_is_in_recovery\(\) is false\)/);
    expect((err as Error).message).not.toContain('password');
  });

  it('always: waits only as long as a commit is invisible', async () => {
    const { s, assembly } = await setup('always');
    const server = await sharedPostgres();
    await setStandbyNames(server, null);
    await s.sql(`INSERT INTO users VALUES (1, 'a')`);
    await waitFor(async () => !(await s.exists('user:1')), { timeoutMs: 10_000, message: 'not invalidated' });
    expect((assembly.source.status().details['visibility'] as { active: boolean }).active).toBe(true);
  });
});
