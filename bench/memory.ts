// Peak memory of the worker, `node dist/cli.js run` as users start it, where a backlog could make it
// grow: a transaction of a million rows, and a backlog drained while Redis keeps pausing.
// Peak RSS is VmHWM from /proc/<pid>/status over the whole run.
import { performance } from 'node:perf_hooks';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { OrphanGuard } from '../test/harness/orphan-guard.js';
import { round } from './percentiles.js';
import { spawnWorker } from './worker-process.js';

export interface MemoryRun {
  changes: number;
  seconds: number;
  peakRssMb: number;
}

interface MemorySetup {
  db: pg.Client;
  redis: Redis;
  guard: OrphanGuard;
  say: (text: string) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Runs the worker on `slot` until the slot's confirmed position reaches `endLsn` (the worker
 * confirms only what Redis applied), while `meanwhile` runs; returns the worker's peak RSS.
 */
async function drain(s: MemorySetup, configPath: string, slot: string, endLsn: string, changes: number, meanwhile?: (done: () => boolean) => Promise<void>): Promise<MemoryRun> {
  const worker = spawnWorker(configPath);
  s.guard.track(worker.pid);
  let finished = false;
  try {
    const exitedEarly = worker.exited.then((code) => {
      throw new Error(`worker exited (${code}):\n${worker.outputTail()}`);
    });
    exitedEarly.catch(() => undefined);
    const started = await Promise.race([worker.replicationStarted, exitedEarly]);
    const side = meanwhile?.(() => finished);
    for (;;) {
      const r = await s.db.query<{ done: boolean }>('SELECT confirmed_flush_lsn >= $2::pg_lsn AS done FROM pg_replication_slots WHERE slot_name = $1', [slot, endLsn]);
      if (r.rows[0]?.done === true) break;
      await Promise.race([sleep(100), exitedEarly]);
    }
    const seconds = (performance.now() - started.at) / 1000;
    finished = true;
    await side;
    const peak = worker.memory();
    return { changes, seconds: round(seconds, 2), peakRssMb: round((peak?.peakKb ?? Number.NaN) / 1024, 1) };
  } finally {
    finished = true;
    await worker.stop(10_000);
    s.guard.track(undefined);
  }
}

/** One INSERT of `rows` rows into `table` (in the publication, mapped by the config), then the worker drains it. */
export async function bigTransaction(s: MemorySetup, o: { table: string; rows: number; slot: string; configPath: string }): Promise<MemoryRun> {
  await s.db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [o.slot]);
  try {
    s.say(`  inserting ${o.rows} rows in one transaction`);
    await s.db.query(`INSERT INTO ${o.table} (id, v) SELECT i, 0 FROM generate_series(1, $1::int) AS i`, [o.rows]);
    const end = (await s.db.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn;
    return await drain(s, o.configPath, o.slot, end, o.rows);
  } finally {
    await s.db.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [o.slot]).catch(() => undefined);
  }
}

/**
 * The worker drains a backlog already in `slot` while Redis stops serving writes for `pauseMs` out
 * of every `periodMs` (CLIENT PAUSE ... WRITE): the source must stop reading rather than buffer.
 */
export async function slowRedis(s: MemorySetup, o: { slot: string; endLsn: string; changes: number; configPath: string; pauseMs: number; periodMs: number }): Promise<MemoryRun & { pauses: number }> {
  let pauses = 0;
  const run = await drain(s, o.configPath, o.slot, o.endLsn, o.changes, async (done) => {
    while (!done()) {
      await s.redis.call('CLIENT', 'PAUSE', String(o.pauseMs), 'WRITE');
      pauses++;
      await sleep(o.periodMs);
    }
  });
  await s.redis.call('CLIENT', 'UNPAUSE');
  return { ...run, pauses };
}
