import type { Change, Evaluation, KeyOperation } from '../core/change.js';
import type { SourceBatch } from '../ports/source.js';
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

  /** metrics.changes' children by schema, table and operation. */
  private readonly changeCounters = new Map<string, Map<string, Map<string, { inc(value: number): void }>>>();

  constructor(readonly metrics: Metrics = new Metrics()) {}

  private changeCounter(change: Change): { inc(value: number): void } {
    let tables = this.changeCounters.get(change.schema);
    if (tables === undefined) this.changeCounters.set(change.schema, (tables = new Map()));
    let ops = tables.get(change.table);
    if (ops === undefined) tables.set(change.table, (ops = new Map()));
    let counter = ops.get(change.op);
    if (counter === undefined) ops.set(change.op, (counter = this.metrics.changes.labels({ table: `${change.schema}.${change.table}`, op: change.op })));
    return counter;
  }

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

  /** Operations applied outside any batch (recovery actions). */
  recoveryApplied(operations: readonly KeyOperation[]): void {
    this.sinkHealthy = true;
    this.lastAppliedAtMs = Date.now();
    this.keysApplied(operations);
  }

  private keysApplied(operations: readonly KeyOperation[]): void {
    const byAction = { delete: 0, bump: 0, tag: 0, pattern: 0 };
    for (const op of operations) byAction[op.action]++;
    this.keysDeleted += byAction.delete;
    this.keysBumped += byAction.bump;
    for (const action of ['delete', 'bump', 'tag', 'pattern'] as const) {
      if (byAction[action] > 0) this.metrics.keys.inc({ action }, byAction[action]);
    }
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

    // Counted per table and operation for the whole batch, not per change: a batch is mostly runs
    // of one table and operation, and each counter's labelled child is looked up once per run.
    let run: Change | undefined;
    let count = 0;
    for (const change of batch.changes) {
      if (run !== undefined && change.table === run.table && change.op === run.op && change.schema === run.schema) {
        count++;
        continue;
      }
      if (run !== undefined) this.changeCounter(run).inc(count);
      run = change;
      count = 1;
    }
    if (run !== undefined) this.changeCounter(run).inc(count);
    this.keysApplied(evaluation.operations);
    for (const f of evaluation.fallbacks) m.fallbacks.inc({ reason: f.reason });
    for (const d of evaluation.deadLetters) m.deadLetters.inc({ reason: d.reason });
    this.fallbacks += evaluation.fallbacks.length;
    this.deadLetters += evaluation.deadLetters.length;
  }
}
