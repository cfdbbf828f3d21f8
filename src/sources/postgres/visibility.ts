import type pg from 'pg';
import type { Change } from '../../core/change.js';
import { isVisible, parseSnapshot } from '../../core/snapshot.js';
import { toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../lib/backoff.js';
import { endClient, openClient } from '../../lib/pg/connection.js';

export type VisibilityMode = 'auto' | 'always' | 'off';

/** Prepared once per connection; rows as arrays: it runs for every batch. */
const SNAPSHOT_QUERY = {
  name: 'cdc_invalidator_snapshot',
  text: `SELECT pg_catalog.pg_current_snapshot()::text, pg_catalog.current_setting('synchronous_standby_names')`,
  rowMode: 'array',
} as const;

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
 * microseconds, so `auto` waits only while synchronous_standby_names is set (read with every
 * snapshot: a reload can set it at any time).
 */
export class VisibilityGate {
  private client: pg.Client | null = null;
  private syncStandbys = false;
  private readonly log: Logger;
  /** Time spent waiting for transactions to become visible, for /status. */
  waitedMs = 0;
  /** Batches that had to wait. */
  waits = 0;
  /** Since when the batch now waiting has waited (performance.now()), or null. */
  private holdingSince: number | null = null;

  constructor(
    private readonly options: { url: string; mode: VisibilityMode; logger: Logger; signal: AbortSignal },
  ) {
    this.log = options.logger.child({ component: 'visibility' });
  }

  /** True once every xid is visible; false when the source stops first. Database faults are retried. */
  async waitVisible(xids: readonly number[]): Promise<boolean> {
    if (this.options.mode === 'off' || xids.length === 0) return true;
    try {
      return await this.poll(xids);
    } finally {
      this.holdingSince = null;
    }
  }

  private async poll(xids: readonly number[]): Promise<boolean> {
    const backoff = new Backoff({ initialMs: 100, maxMs: 5_000 });
    let waitMs = FIRST_WAIT_MS;
    let started = -1;
    while (!this.options.signal.aborted) {
      try {
        const client = await this.connect();
        // The setting and the snapshot in one round trip: a cached setting would let the commits
        // made just after synchronous standbys were configured through unchecked.
        const [snap, names] = (await client.query<[string, string]>(SNAPSHOT_QUERY)).rows[0]!;
        if (this.options.mode === 'auto' && !this.noteSetting(names)) return true;
        const snapshot = parseSnapshot(snap);
        if (xids.every((xid) => isVisible(snapshot, xid))) {
          if (started >= 0) {
            this.waits++;
            this.waitedMs += performance.now() - started;
          }
          return true;
        }
        if (started < 0) started = this.holdingSince = performance.now();
        await sleep(waitMs, this.options.signal);
        waitMs = Math.min(MAX_WAIT_MS, waitMs * 2);
      } catch (err) {
        await this.drop();
        if (this.options.signal.aborted) return false;
        if (serverGoingAway(err)) {
          // No session can read the primary now, and a backend still waiting for its standby
          // ends with the server, its commit then visible to every session that follows. The
          // walsender of a server shutting down waits for this batch to be confirmed.
          this.log.info({ err: toError(err) }, 'database shutting down or not accepting connections; commits pass without a visibility check');
          return true;
        }
        const delayMs = backoff.next();
        this.log.warn({ err: toError(err), attempt: backoff.attempts, delayMs }, 'cannot read the snapshot; retrying');
        await sleep(delayMs, this.options.signal);
      }
    }
    return false;
  }

  /** How long the batch now waiting has waited for visibility, in ms; null when none waits. */
  get holdingMs(): number | null {
    return this.holdingSince === null ? null : performance.now() - this.holdingSince;
  }

  /** Whether the gate applies now; for /status. */
  get active(): boolean {
    return this.options.mode === 'always' || (this.options.mode === 'auto' && this.syncStandbys);
  }

  /** Whether synchronous standbys are configured; logs when that changes. */
  private noteSetting(names: string): boolean {
    const sync = names.trim() !== '';
    if (sync !== this.syncStandbys) {
      this.log.info(
        { synchronousStandbyNames: names },
        sync
          ? 'synchronous standbys configured: invalidations wait until each commit is visible'
          : 'no synchronous standbys: invalidations no longer wait for visibility',
      );
    }
    this.syncStandbys = sync;
    return sync;
  }

  private async connect(): Promise<pg.Client> {
    this.client ??= await openClient(this.options.url, 'cdc-invalidator visibility');
    return this.client;
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

/**
 * The server is shutting down, restarting or gone: admin shutdown (57P01), crash shutdown (57P02),
 * cannot connect now (57P03), or nothing listening.
 */
function serverGoingAway(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code === '57P01' || code === '57P02' || code === '57P03' || code === 'ECONNREFUSED';
}

/**
 * The 32-bit transaction id of each transaction whose changes are buffered, in the order they began
 * (the order pgoutput sends them, and their changes are buffered in), until its changes are taken
 * and checked. Arrays, not a map: this runs for every transaction of the stream.
 */
export class TransactionIds {
  private positions: string[] = [];
  private ids: number[] = [];
  private head = 0;
  private open = false;
  private currentHasChanges = false;

  begin(xid: number, position: string): void {
    this.positions.push(position);
    this.ids.push(xid);
    this.open = true;
    this.currentHasChanges = false;
  }

  change(): void {
    this.currentHasChanges = true;
  }

  /** A transaction without a change of a published table (servers before 15 send those) has nothing to check. */
  commit(): void {
    if (this.open && !this.currentHasChanges && this.positions.length > this.head) {
      this.positions.pop();
      this.ids.pop();
    }
    this.open = false;
  }

  /**
   * The ids of these changes' transactions, forgotten once taken. A batch can end inside a
   * transaction whose other changes come with the next batch: those need no second check, since
   * the batch with its first changes is handed over only once the transaction is visible.
   */
  take(changes: readonly Change[]): number[] {
    const out: number[] = [];
    let previous: string | null = null;
    for (const change of changes) {
      if (change.position === previous) continue;
      previous = change.position;
      let at = this.head;
      if (this.positions[at] !== previous) {
        // The rest of a transaction taken before, whose id is gone; anything else is found further on.
        at = this.positions.indexOf(previous, this.head);
        if (at < 0) continue;
      }
      out.push(this.ids[at]!);
      this.head = at + 1;
    }
    if (this.head === this.positions.length) {
      this.positions = [];
      this.ids = [];
      this.head = 0;
    } else if (this.head > 1_024 && this.head * 2 > this.positions.length) {
      this.positions = this.positions.slice(this.head);
      this.ids = this.ids.slice(this.head);
      this.head = 0;
    }
    return out;
  }

  /** What was buffered is dropped (the stream restarts from the applied position). */
  clear(): void {
    this.positions = [];
    this.ids = [];
    this.head = 0;
    this.open = false;
  }

  get size(): number {
    return this.positions.length - this.head;
  }
}
