import pg from 'pg';
import { isVisible, parseSnapshot } from '../../core/snapshot.js';
import { toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../runtime/backoff.js';
import { endClient } from './pg-connection.js';
import { libpqConnectionString } from './sql.js';

export type VisibilityMode = 'auto' | 'always' | 'off';

/** How often `auto` reads synchronous_standby_names again (a reload can change it). */
const SETTING_TTL_MS = 1_000;
/** Waits between snapshot reads while a transaction is still invisible: short, growing. */
const FIRST_WAIT_MS = 0.5;
const MAX_WAIT_MS = 10;

/**
 * Holds a batch back until every transaction in it is visible to new snapshots on the primary.
 *
 * A committing backend flushes its commit record, waits for its synchronous standbys, and only
 * then leaves the proc array and becomes visible. The walsender ships the commit once it is
 * flushed locally, before that wait: an invalidation applied then lets a reader that misses
 * re-read the old row and cache it for good. Checking each transaction's id against
 * pg_current_snapshot() closes that window; without synchronous standbys the gap is a few
 * microseconds, so `auto` checks only while synchronous_standby_names is set.
 */
export class VisibilityGate {
  private client: pg.Client | null = null;
  private syncStandbys = false;
  private settingReadAtMs = -Infinity;
  private readonly log: Logger;
  /** Time spent waiting for transactions to become visible, for /status. */
  waitedMs = 0;
  /** Batches that had to wait. */
  waits = 0;

  constructor(
    private readonly options: { url: string; mode: VisibilityMode; logger: Logger; signal: AbortSignal },
  ) {
    this.log = options.logger.child({ component: 'visibility' });
  }

  /** True once every xid is visible; false when the source stops first. Database faults are retried. */
  async waitVisible(xids: readonly number[]): Promise<boolean> {
    if (this.options.mode === 'off' || xids.length === 0) return true;
    const backoff = new Backoff({ initialMs: 100, maxMs: 5_000 });
    let waitMs = FIRST_WAIT_MS;
    let started = -1;
    while (!this.options.signal.aborted) {
      try {
        const client = await this.connect();
        if (this.options.mode === 'auto' && !(await this.hasSyncStandbys(client))) return true;
        const snap = (await client.query<{ s: string }>('SELECT pg_catalog.pg_current_snapshot()::text AS s')).rows[0]!.s;
        const snapshot = parseSnapshot(snap);
        if (xids.every((xid) => isVisible(snapshot, xid))) {
          if (started >= 0) {
            this.waits++;
            this.waitedMs += performance.now() - started;
          }
          return true;
        }
        if (started < 0) started = performance.now();
        await sleep(waitMs, this.options.signal);
        waitMs = Math.min(MAX_WAIT_MS, waitMs * 2);
      } catch (err) {
        await this.drop();
        if (this.options.signal.aborted) return false;
        const delayMs = backoff.next();
        this.log.warn({ err: toError(err), attempt: backoff.attempts, delayMs }, 'cannot read the snapshot; retrying');
        await sleep(delayMs, this.options.signal);
      }
    }
    return false;
  }

  /** Whether the gate applies now; for /status. */
  get active(): boolean {
    return this.options.mode === 'always' || (this.options.mode === 'auto' && this.syncStandbys);
  }

  private async hasSyncStandbys(client: pg.Client): Promise<boolean> {
    const now = performance.now();
    if (now - this.settingReadAtMs >= SETTING_TTL_MS) {
      const row = (await client.query<{ names: string }>(`SELECT current_setting('synchronous_standby_names') AS names`)).rows[0];
      const sync = (row?.names ?? '').trim() !== '';
      if (sync !== this.syncStandbys) {
        this.log.info({ synchronousStandbyNames: row?.names ?? '' }, sync
          ? 'synchronous standbys configured: invalidations wait until each commit is visible'
          : 'no synchronous standbys: invalidations no longer wait for visibility');
      }
      this.syncStandbys = sync;
      this.settingReadAtMs = now;
    }
    return this.syncStandbys;
  }

  private async connect(): Promise<pg.Client> {
    if (this.client !== null) return this.client;
    const client = new pg.Client({ connectionString: libpqConnectionString(this.options.url), application_name: 'cdc-invalidator visibility' } as pg.ClientConfig);
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (err) {
      await endClient(client);
      throw err;
    }
    this.client = client;
    return client;
  }

  private async drop(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (client !== null) await endClient(client);
  }

  async close(): Promise<void> {
    await this.drop();
  }
}
