import type pg from 'pg';
import type { Logger } from '../../log.js';
import { PeriodicQuery } from './periodic-query.js';

export interface SlotStats {
  /** pg_current_wal_lsn() minus the slot's confirmed_flush_lsn. */
  lagBytes: number;
  /** pg_current_wal_lsn() minus the slot's restart_lsn: WAL the server keeps for this slot. */
  retainedBytes: number;
  /** reserved, extended, unreserved or lost (PostgreSQL 13+). */
  walStatus: string | null;
  active: boolean;
  activePid: number | null;
  /** When these were read (ms since the epoch). */
  readAtMs: number;
}

/**
 * Reads the slot's lag and retained WAL on an interval, on a connection of its own, for /status
 * and the metrics. These are the numbers that tell an operator the disk is filling up.
 */
export class SlotMonitor {
  private latest: SlotStats | null = null;
  private readonly task: PeriodicQuery;

  constructor(url: string, slot: string, intervalMs: number, logger: Logger) {
    this.task = new PeriodicQuery({
      url,
      intervalMs,
      what: 'reading replication slot statistics',
      immediately: true,
      logger,
      work: async (client) => {
        this.latest = await readSlotStats(client, slot);
      },
    });
  }

  get stats(): SlotStats | null {
    return this.latest;
  }

  /** What /status shows of the slot; nothing before the first reading. */
  details(): Record<string, unknown> {
    const stats = this.latest;
    if (stats === null) return {};
    return {
      retainedWalBytes: stats.retainedBytes,
      walStatus: stats.walStatus,
      slotActive: stats.active,
      slotStatsAgeSeconds: Math.round((Date.now() - stats.readAtMs) / 100) / 10,
    };
  }

  start(): void {
    this.task.start();
  }

  stop(): void {
    this.task.stop();
  }
}

async function readSlotStats(client: pg.Client, slot: string): Promise<SlotStats | null> {
  const result = await client.query<{
    lag: string | null;
    retained: string | null;
    wal_status: string | null;
    active: boolean;
    active_pid: number | null;
  }>(
    `SELECT (pg_catalog.pg_current_wal_lsn() - confirmed_flush_lsn)::text AS lag,
            (pg_catalog.pg_current_wal_lsn() - restart_lsn)::text AS retained,
            wal_status, active, active_pid
       FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  return {
    lagBytes: Math.max(0, Number(row.lag ?? 0)),
    retainedBytes: Math.max(0, Number(row.retained ?? 0)),
    walStatus: row.wal_status,
    active: row.active,
    activePid: row.active_pid,
    readAtMs: Date.now(),
  };
}
