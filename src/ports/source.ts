import type { Change, DeadLetter } from '../core/change.js';

/**
 * The port between a change source (Postgres logical replication, Debezium on Kafka) and the
 * worker loop. A source yields committed changes in order and is told, batch by batch, what has
 * been applied; it must never acknowledge anything to its upstream before that.
 */
export interface SourceBatch<P = unknown> {
  readonly changes: readonly Change[];
  /** Commit time of the oldest change in the batch (ms since the epoch), NaN when unknown. */
  readonly oldestCommitTimeMs: number;
  /** Commit time (ms since the epoch) of each transaction the batch completes, for end-to-end latency. */
  readonly commitTimesMs: readonly number[];
  /**
   * What acknowledging this batch confirms, in the source's own terms (an LSN, Kafka offsets per
   * partition); the worker only hands it back.
   */
  readonly position: P;
  /**
   * The position an application can wait for once this batch is applied (read-your-writes): a
   * PostgreSQL LSN as text; null where the source has none, or the batch ends inside a transaction.
   */
  readonly appliedPosition?: string | null;
  /** Events the source could not read (a malformed message): recorded as dead letters with the batch. */
  readonly deadLetters?: readonly DeadLetter[];
}

export interface SourceStatus {
  connected: boolean;
  /** Positions in the source's own notation. */
  received: string | null;
  applied: string | null;
  confirmed: string | null;
  /** Changes buffered, not yet handed to the worker. */
  buffered: number;
  /** Commit time (ms since the epoch) of the oldest change buffered, null when none. */
  oldestBufferedCommitTimeMs: number | null;
  /** How far the upstream is ahead of what was confirmed, in bytes; null when unknown. */
  lagBytes: number | null;
  /** Source-specific facts for /status (slot, WAL retained, ...). */
  details: Record<string, unknown>;
  /**
   * For a source one worker streams at a time (a Postgres slot): whether this worker streams it
   * (active) or waits for another to let go (standby), and since when (ms since the epoch).
   */
  role?: { role: 'active' | 'standby'; sinceMs: number } | null;
}

export interface Source<P = unknown> {
  /** Connects and starts streaming. Retryable faults are retried inside; fatal ones reject. */
  start(): Promise<void>;
  /**
   * Waits for the next batch of at most `maxChanges` changes. Resolves null once the source is
   * stopping; rejects when it failed for good (the worker then stops and exits non-zero).
   */
  next(maxChanges: number): Promise<SourceBatch<P> | null>;
  /** Every change of this batch (and of all before it) has been applied by the sink. */
  acknowledge(batch: SourceBatch<P>): Promise<void>;
  /** Stops intake: a waiting next() resolves null. Safe to call twice. */
  stopIntake(): void;
  /** Sends the final acknowledgement and closes connections. Safe to call twice. */
  close(): Promise<void>;
  status(): SourceStatus;
}
