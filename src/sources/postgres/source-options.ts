import type { RuleSet } from '../../core/rules.js';
import type { Lsn } from '../../core/lsn.js';
import type { Logger } from '../../log.js';
import type { VisibilityMode } from './visibility.js';

export interface PostgresSourceOptions {
  url: string;
  slot: string;
  publication: string;
  /** The rules: the tables to stream, and what each needs from its columns and old rows. */
  rules: RuleSet;
  /** check: refuse rules a table cannot serve; full: set REPLICA IDENTITY FULL where they need it. */
  replicaIdentity: 'check' | 'full';
  heartbeatSeconds: number;
  maxWaitMs: number;
  /** Changes buffered before the socket is paused; keeps memory bounded under a 1M-row transaction. */
  highWaterChanges: number;
  /** Bytes of changes (as received) buffered before the socket is paused: bounds memory for wide rows. */
  highWaterBytes?: number;
  /** Bytes of changes (as received) handed to the worker in one batch, one change at least. */
  maxBatchBytes?: number;
  /** How often the slot's lag and retained WAL are read. */
  slotStatsIntervalMs?: number;
  /**
   * Called when the slot lost WAL and was recreated, with the server's WAL position: invalidates
   * whatever the lost changes could have touched. Without it, a lost slot is fatal.
   */
  recoverLostChanges?: (versionLsn: bigint) => Promise<void>;
  /** consistency.visibility: hold batches until their transactions are visible to new snapshots. */
  visibility?: VisibilityMode;
  /**
   * Standby status updates while nothing else is sent. Default: a third of the server's
   * wal_sender_timeout (at most 10 s), so a worker blocked on Redis is never cut off.
   */
  statusIntervalMs?: number;
  logger: Logger;
}

/** Internal to this source: what acknowledging a batch confirms. */
export interface PgPosition {
  endLsn: Lsn;
  /** A keepalive position reached while nothing was pending, not a commit. */
  keepalive?: true;
}
