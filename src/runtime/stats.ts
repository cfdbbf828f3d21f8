import type { Operation } from '../core/change.js';

/**
 * Counters the worker keeps as it goes; the HTTP endpoints and metrics read them. Plain fields,
 * written only by the worker loop.
 */
export class WorkerStats {
  batches = 0;
  changes = 0;
  keysDeleted = 0;
  keysBumped = 0;
  retries = 0;
  fallbacks = 0;
  deadLetters = 0;
  sinkHealthy = false;
  lastAppliedAtMs: number | null = null;
  /** Commit time of the oldest change of the batch being applied, or null. */
  inFlightOldestCommitTimeMs: number | null = null;
  applyCount = 0;
  applySecondsTotal = 0;
  readonly changesByTable = new Map<string, number>();

  countChange(schema: string, table: string, op: Operation): void {
    const key = `${schema}.${table}\u0000${op}`;
    this.changesByTable.set(key, (this.changesByTable.get(key) ?? 0) + 1);
  }
}
