import type { Evaluation } from '../core/change.js';
import type { SourceBatch } from '../sources/source.js';
import { Metrics } from './metrics.js';

/**
 * What the worker loop records as it goes: plain counters for /status (and tests), mirrored into
 * the Prometheus metrics. Written only by the loop.
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
  /** Last time the loop took a batch or attempted to apply one: what liveness watches. */
  lastActivityMs = Date.now();
  /** The batch being applied: its oldest commit time (ms) is what lag measures; null when idle. */
  inFlightOldestCommitTimeMs: number | null = null;

  constructor(readonly metrics: Metrics = new Metrics()) {}

  batchTaken(batch: SourceBatch, nowMs: number): void {
    this.lastActivityMs = nowMs;
    this.inFlightOldestCommitTimeMs = Number.isNaN(batch.oldestCommitTimeMs) ? nowMs : batch.oldestCommitTimeMs;
  }

  applyAttempt(nowMs: number): void {
    this.lastActivityMs = nowMs;
  }

  applyFailed(): void {
    this.sinkHealthy = false;
    this.retries++;
    this.metrics.retries.inc();
  }

  batchApplied(batch: SourceBatch, evaluation: Evaluation, applySeconds: number, nowMs: number): void {
    this.sinkHealthy = true;
    this.batches++;
    this.changes += batch.changes.length;
    this.lastAppliedAtMs = nowMs;
    this.inFlightOldestCommitTimeMs = null;
    const m = this.metrics;
    m.batches.inc();
    m.applyDuration.observe(applySeconds);
    for (const commitMs of batch.commitTimesMs) m.endToEnd.observe(Math.max(0, (nowMs - commitMs) / 1000));

    // Counted per table and operation for the whole batch, not per change: label lookups are the
    // expensive part of a counter, and a batch mixing inserts, updates and deletes is common.
    const counts = new Map<string, Map<string, Map<string, number>>>();
    for (const change of batch.changes) {
      let tables = counts.get(change.schema);
      if (tables === undefined) counts.set(change.schema, (tables = new Map()));
      let ops = tables.get(change.table);
      if (ops === undefined) tables.set(change.table, (ops = new Map()));
      ops.set(change.op, (ops.get(change.op) ?? 0) + 1);
    }
    for (const [schema, tables] of counts) {
      for (const [table, ops] of tables) {
        for (const [op, count] of ops) m.changes.inc({ table: `${schema}.${table}`, op }, count);
      }
    }
    const byAction = { delete: 0, bump: 0, tag: 0, pattern: 0 };
    for (const op of evaluation.operations) byAction[op.action]++;
    this.keysDeleted += byAction.delete;
    this.keysBumped += byAction.bump;
    for (const action of ['delete', 'bump', 'tag', 'pattern'] as const) {
      if (byAction[action] > 0) m.keys.inc({ action }, byAction[action]);
    }
    for (const f of evaluation.fallbacks) m.fallbacks.inc({ reason: f.reason });
    for (const d of evaluation.deadLetters) m.deadLetters.inc({ reason: d.reason });
    this.fallbacks += evaluation.fallbacks.length;
    this.deadLetters += evaluation.deadLetters.length;
  }
}
