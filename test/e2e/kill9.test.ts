import { afterEach, describe, expect, it } from 'vitest';
import { servicesMissing } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from '../integration/scenario.js';
import { spawnCli, type WorkerProcess } from './worker-process.js';

const CHANGES = 20_000;
const KILLS = 6;

let scenario: Scenario | undefined;
let worker: WorkerProcess | undefined;
afterEach(async () => {
  if (worker !== undefined && worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGKILL');
    await worker.exited;
  }
  await scenario?.cleanup();
  scenario = undefined;
});

/**
 * The guarantee behind everything: the slot's confirmed position never passes what Redis has
 * applied, so a worker killed at any moment loses nothing. The worker drains a backlog of
 * single-row transactions in small batches and is killed with SIGKILL several times along the
 * way. All the while, every transaction the slot has confirmed must already have its key gone
 * from Redis; at the end, every key must be gone.
 */
describe.skipIf(servicesMissing('postgres', 'redis'))('kill -9', () => {
  it(`loses nothing when the worker is killed ${KILLS} times while draining ${CHANGES} changes`, { timeout: 420_000 }, async () => {
    scenario = await createScenario({
      schema: `
        CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
        INSERT INTO public.items (id) SELECT generate_series(1, ${CHANGES});
        -- Not published: for each transaction, a WAL position known to be past its commit.
        CREATE TABLE public.commit_bounds (i int PRIMARY KEY, bound pg_lsn NOT NULL);
        CREATE PROCEDURE public.churn(n int) LANGUAGE plpgsql AS $$
        BEGIN
          FOR i IN 1..n LOOP
            IF i > 1 THEN INSERT INTO public.commit_bounds VALUES (i - 1, pg_current_wal_insert_lsn()); END IF;
            UPDATE public.items SET v = v + 1 WHERE id = i;
            COMMIT;
          END LOOP;
          INSERT INTO public.commit_bounds VALUES (n, pg_current_wal_insert_lsn());
        END $$;`,
      rules: `
  - table: items
    invalidate: ["item:{id}"]
    bump: ["items:version"]
`,
      config: `batch:\n  maxChanges: 20\n`,
    });
    const s = scenario;
    // Publication, then slot, before the backlog: the worker finds both and starts from the slot.
    await s.sql(`CREATE PUBLICATION ${s.publication} FOR TABLE public.items, public.cdc_sentinel`);
    await s.sql(`SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, [s.slot]);
    const keys = Array.from({ length: CHANGES }, (_, i) => `item:${i + 1}`);
    for (let i = 0; i < keys.length; i += 5_000) await s.seed(...keys.slice(i, i + 5_000));
    await s.sql(`CALL public.churn(${CHANGES})`);
    const bounds = (await s.sql<{ i: number; bound: string }>(
      `SELECT i, (bound - '0/0')::text AS bound FROM public.commit_bounds ORDER BY i`,
    )).map((r) => BigInt(r.bound));
    expect(bounds).toHaveLength(CHANGES);

    // Invariant sampler: transactions i whose bound is at or below the confirmed position must have
    // had their key deleted before the confirmation was sent.
    let verified = 0;
    const violations: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const [row] = await s.sql<{ c: string | null }>(
          `SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`,
          [s.slot],
        );
        const confirmed = BigInt(row?.c ?? '0');
        let upTo = verified;
        while (upTo < CHANGES && bounds[upTo]! <= confirmed) upTo++;
        if (upTo > verified) {
          const multi = s.redis.multi();
          for (let i = verified; i < upTo; i++) multi.exists(s.prefix + keys[i]!);
          const results = (await multi.exec()) ?? [];
          results.forEach(([, present], j) => {
            if (present === 1) violations.push(verified + j + 1);
          });
          verified = upTo;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    const remaining = async () => s.redis.exists(...keys.map((k) => s.prefix + k));
    let killedMidway = 0;
    for (let k = 0; k < KILLS; k++) {
      worker = spawnCli(['run', '--config', s.configPath]);
      await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'worker did not start' });
      await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 250)));
      worker.child.kill('SIGKILL');
      expect(await worker.exited).toBe('SIGKILL');
      const left = await remaining();
      if (left > 0 && left < CHANGES) killedMidway++;
    }

    worker = spawnCli(['run', '--config', s.configPath]);
    await waitFor(async () => (await remaining()) === 0, { timeoutMs: 120_000, intervalMs: 200, message: 'not every key was invalidated' });
    // Keys deleted by earlier workers may not have been confirmed: the last worker replays them, and
    // is caught up once the slot has confirmed every transaction (the sampler checks each).
    await waitFor(() => verified === CHANGES, { timeoutMs: 120_000, message: `the slot confirmed only ${verified} transactions` });
    worker.child.kill('SIGTERM');
    const exit = await Promise.race([worker.exited, new Promise((r) => setTimeout(() => r('no exit within 60 s'), 60_000))]);
    expect(exit, worker.output().slice(-3000)).toBe(0);
    sampling = false;
    await sampler;

    expect(violations).toEqual([]);
    // The kills really landed mid-drain; otherwise this test proves little.
    expect(killedMidway).toBeGreaterThanOrEqual(2);
  });
});
