import type pg from 'pg';
import { formatLsn, lsnFromBigInt } from '../../core/lsn.js';
import { SourceSetupError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { redactUrl } from '../../log.js';
import { sleep } from '../../lib/backoff.js';
import { endClient, openClient } from '../../lib/pg/connection.js';

interface Replica {
  url: string;
  /** For logs and /status: the URL without its password. */
  name: string;
  client: pg.Client | null;
  /** pg_last_wal_replay_lsn() as last read; -1 before the first reading. */
  replayedLsn: bigint;
  /** Since when the oldest waiting commit has waited for this replica; null when none waits. */
  behindSinceMs: number | null;
  lastError: string | null;
  /** The last connection failure was logged (once per outage). */
  failing: boolean;
}

export interface ReplicaStatus {
  replica: string;
  replayed: string | null;
  behindMs: number;
  error: string | null;
}

/**
 * Watches the replay position of the read replicas the application reads from, so that a commit's
 * keys can be invalidated again once each replica shows the commit: a reader that missed on the
 * primary's invalidation may have refilled from a replica that had not replayed it yet.
 *
 * A replica is read with pg_last_wal_replay_lsn(): the end of the last WAL record it replayed, so
 * a position past a commit record's start means the commit is visible there. A replica that cannot
 * be reached is waited for (never skipped) and reported.
 */
export class ReplicaWatcher {
  private readonly replicas: Replica[];
  private readonly log: Logger;
  private readonly stopController = new AbortController();

  constructor(
    private readonly options: { urls: readonly string[]; pollMs: number; timeoutMs: number; logger: Logger },
  ) {
    this.log = options.logger.child({ component: 'replicas' });
    this.replicas = options.urls.map((url) => ({
      url,
      name: redactUrl(url),
      client: null,
      replayedLsn: -1n,
      behindSinceMs: null,
      lastError: null,
      failing: false,
    }));
  }

  /**
   * Checks each replica once at start: a URL that names a primary (or another cluster) would make
   * every wait pass or never pass, so it is refused. An unreachable replica is only logged here.
   */
  async start(): Promise<void> {
    for (const r of this.replicas) {
      try {
        const client = await this.connect(r);
        const row = (await client.query<{ recovery: boolean }>('SELECT pg_catalog.pg_is_in_recovery() AS recovery')).rows[0];
        if (row?.recovery !== true) {
          throw new SourceSetupError(
            `consistency.replicas: ${r.name} is not a replica (pg_is_in_recovery() is false): list the streaming ` +
              'replicas the application reads from, not the primary',
          );
        }
      } catch (err) {
        if (err instanceof SourceSetupError) throw err;
        this.failed(r, err);
      }
    }
  }

  /** True once every replica has replayed past `lsn`; false when stopping first. */
  async waitReplayed(lsn: bigint): Promise<boolean> {
    let first = true;
    while (!this.stopController.signal.aborted) {
      const now = Date.now();
      const behind = this.replicas.filter((r) => r.replayedLsn <= lsn);
      for (const r of this.replicas) {
        if (r.replayedLsn > lsn) r.behindSinceMs = null;
        else r.behindSinceMs ??= now;
      }
      if (behind.length === 0) return true;
      if (!first) await sleep(this.options.pollMs, this.stopController.signal);
      first = false;
      await Promise.all(behind.map((r) => this.read(r)));
    }
    return false;
  }

  private async read(r: Replica): Promise<void> {
    try {
      const client = await this.connect(r);
      const row = (await client.query<{ lsn: string | null }>(`SELECT (pg_catalog.pg_last_wal_replay_lsn() - '0/0')::text AS lsn`)).rows[0];
      if (row?.lsn == null) throw new Error('pg_last_wal_replay_lsn() is null: the server is no longer a replica');
      r.replayedLsn = BigInt(row.lsn.replace(/\..*$/, ''));
      if (r.failing) this.log.info({ replica: r.name }, 'replica reachable again');
      r.failing = false;
      r.lastError = null;
    } catch (err) {
      this.failed(r, err);
      await this.drop(r);
    }
  }

  private failed(r: Replica, err: unknown): void {
    r.lastError = toError(err).message;
    if (!r.failing) {
      this.log.warn({ replica: r.name, err: toError(err) }, 'cannot read the replay position of a replica; invalidations wait for it');
    }
    r.failing = true;
  }

  private async connect(r: Replica): Promise<pg.Client> {
    r.client ??= await openClient(r.url, 'cdc-invalidator replica watch');
    return r.client;
  }

  private async drop(r: Replica): Promise<void> {
    const client = r.client;
    r.client = null;
    if (client !== null) await endClient(client);
  }

  /** Replicas that have kept a commit waiting longer than the timeout: reasons for /readyz. */
  lagging(): string[] {
    const now = Date.now();
    return this.replicas
      .filter((r) => r.behindSinceMs !== null && now - r.behindSinceMs > this.options.timeoutMs)
      .map((r) => `replica ${r.name} has not replayed a commit for ${Math.round((now - r.behindSinceMs!) / 1000)} s${r.lastError === null ? '' : ` (${r.lastError})`}`);
  }

  status(): ReplicaStatus[] {
    const now = Date.now();
    return this.replicas.map((r) => ({
      replica: r.name,
      replayed: r.replayedLsn < 0n ? null : formatLsn(lsnFromBigInt(r.replayedLsn)),
      behindMs: r.behindSinceMs === null ? 0 : now - r.behindSinceMs,
      error: r.lastError,
    }));
  }

  async close(): Promise<void> {
    this.stopController.abort();
    await Promise.all(this.replicas.map((r) => this.drop(r)));
  }
}
