import pg from 'pg';
import { toError } from '../../errors.js';
import type { Logger } from '../../log.js';

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
  private timer: NodeJS.Timeout | null = null;
  private client: pg.Client | null = null;
  private busy = false;
  private failing = false;
  private latest: SlotStats | null = null;

  constructor(
    private readonly url: string,
    private readonly slot: string,
    private readonly intervalMs: number,
    private readonly log: Logger,
  ) {}

  get stats(): SlotStats | null {
    return this.latest;
  }

  start(): void {
    if (this.timer !== null) return;
    void this.read();
    this.timer = setInterval(() => void this.read(), this.intervalMs);
    this.timer.unref();
  }

  private async read(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.client === null) {
        const client = new pg.Client({ connectionString: this.url, application_name: 'cdc-invalidator monitor' });
        client.on('error', () => undefined);
        await client.connect();
        this.client = client;
      }
      const result = await this.client.query<{
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
        [this.slot],
      );
      const row = result.rows[0];
      this.latest =
        row === undefined
          ? null
          : {
              lagBytes: Math.max(0, Number(row.lag ?? 0)),
              retainedBytes: Math.max(0, Number(row.retained ?? 0)),
              walStatus: row.wal_status,
              active: row.active,
              activePid: row.active_pid,
              readAtMs: Date.now(),
            };
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.log.warn({ err: toError(err) }, 'cannot read replication slot statistics');
      this.failing = true;
      const client = this.client;
      this.client = null;
      await client?.end().catch(() => undefined);
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    void client?.end().catch(() => undefined);
  }
}
