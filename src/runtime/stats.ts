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

    // Counted per run of changes to the same table and operation (the common shape of a batch),
    // not per change: label lookups are the expensive part of a counter.
    let run: { schema: string; table: string; op: string; count: number } | null = null;
    for (const change of batch.changes) {
      if (run !== null && run.schema === change.schema && run.table === change.table && run.op === change.op) {
        run.count++;
        continue;
      }
      if (run !== null) m.changes.inc({ table: `${run.schema}.${run.table}`, op: run.op }, run.count);
      run = { schema: change.schema, table: change.table, op: change.op, count: 1 };
    }
    if (run !== null) m.changes.inc({ table: `${run.schema}.${run.table}`, op: run.op }, run.count);
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
