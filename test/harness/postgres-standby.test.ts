import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { PostgresStandby } from './postgres-standby.js';
import { servicesMissing, sharedPostgres, uniqueName } from './services.js';
import { waitFor } from './wait-for.js';

const standbys: PostgresStandby[] = [];
afterEach(async () => {
  for (const s of standbys.splice(0)) await s.destroy();
});

describe.skipIf(servicesMissing('postgres-binaries'))('PostgresStandby', () => {
  it('replays with recovery_min_apply_delay: a commit shows on the replica only after the delay', async () => {
    const primary = await sharedPostgres();
    const db = uniqueName('db');
    await primary.createDatabase(db);
    await primary.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 0)', [], db);
    const delayMs = 500;
    const replica = await PostgresStandby.start(primary, { applyDelay: delayMs });
    standbys.push(replica);
    await replica.waitForReplay();
    expect(await replica.query('SELECT v FROM t', [], db)).toEqual([{ v: 0 }]);
    expect(await replica.query('SELECT pg_is_in_recovery() AS r')).toEqual([{ r: true }]);

    const sentAt = Date.now();
    await primary.query('UPDATE t SET v = 1', [], db);
    const early = await replica.query('SELECT v FROM t', [], db);
    // Only a read that surely ran within the delay must see the old row (a stalled machine may be late).
    if (Date.now() - sentAt < delayMs - 100) expect(early).toEqual([{ v: 0 }]);
    await replica.waitForReplay();
    expect(await replica.query('SELECT v FROM t', [], db)).toEqual([{ v: 1 }]);
    // Replay waits until the commit's timestamp (taken after sentAt) plus the delay, on the same clock.
    expect(Date.now() - sentAt).toBeGreaterThanOrEqual(delayMs - 2);
  });

  it('as the synchronous standby, paused, holds a commit that is flushed on the primary but not yet visible', async () => {
    const primary = await sharedPostgres();
    const db = uniqueName('db');
    await primary.createDatabase(db);
    await primary.query('CREATE TABLE t (id int PRIMARY KEY, v int NOT NULL); INSERT INTO t VALUES (1, 0)', [], db);
    const standby = await PostgresStandby.start(primary, { synchronous: true });
    standbys.push(standby);
    expect(await primary.query('SHOW synchronous_standby_names')).toEqual([{ synchronous_standby_names: `"${standby.name}"` }]);

    const writer = new pg.Client({ connectionString: primary.url(db) });
    await writer.connect();
    try {
      standby.pause();
      const update = writer.query('UPDATE t SET v = 1');
      await waitFor(
        async () => (await primary.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'`)).length === 1,
        { message: 'the commit to wait for the synchronous standby' },
      );
      // The commit record is in the primary's WAL (a logical walsender would ship it), yet other sessions
      // still see the old row.
      expect(await primary.query('SELECT v FROM t', [], db)).toEqual([{ v: 0 }]);
      standby.resume();
      await update;
      expect(await primary.query('SELECT v FROM t', [], db)).toEqual([{ v: 1 }]);
    } finally {
      standby.resume();
      await writer.end();
    }

    await standby.destroy();
    expect(await primary.query('SHOW synchronous_standby_names')).toEqual([{ synchronous_standby_names: '' }]);
    expect(await primary.query('SELECT slot_name FROM pg_replication_slots WHERE slot_name = $1', [standby.name])).toEqual([]);
    // Commits no longer wait for anyone.
    await primary.query('UPDATE t SET v = 2', [], db);
  });
});
