import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { compileRules } from '../../src/core/rules.js';
import { silentLogger } from '../../src/log.js';
import { WorkerStats } from '../../src/runtime/stats.js';
import { Worker } from '../../src/runtime/worker.js';
import type { Sink, SinkBatch } from '../../src/sinks/sink.js';
import type { Source, SourceBatch, SourceStatus } from '../../src/sources/source.js';

const { rules } = compileRules([{ file: 'm.yaml', rules: [{ table: 'items', invalidate: ['item:{id}'] }] }]);

function change(id: number): Change {
  return { schema: 'public', table: 'items', op: 'insert', before: null, after: { id: String(id) }, keyColumns: ['id'], version: BigInt(id), position: `0/${id}` };
}

/** A source that hands out prepared batches in order and records every acknowledgement. */
class ScriptedSource implements Source {
  readonly events: string[] = [];
  private closed = false;
  private wake: (() => void) | null = null;
  constructor(private readonly batches: SourceBatch[]) {}
  async start() {}
  async next(): Promise<SourceBatch | null> {
    for (;;) {
      if (this.closed) return null;
      const b = this.batches.shift();
      if (b !== undefined) return b;
      await new Promise<void>((r) => (this.wake = r));
    }
  }
  async acknowledge(batch: SourceBatch) {
    this.events.push(`ack ${String(batch.position)}`);
  }
  stopIntake() {
    this.closed = true;
    this.wake?.();
  }
  async close() {
    this.events.push('close');
  }
  status(): SourceStatus {
    return { connected: true, received: null, applied: null, confirmed: null, buffered: 0, oldestBufferedCommitTimeMs: null, lagBytes: null, details: {} };
  }
}

class FlakySink implements Sink {
  failuresLeft: number;
  constructor(failures: number, private readonly events: string[]) {
    this.failuresLeft = failures;
  }
  async connect() {}
  isConnected() {
    return true;
  }
  async apply(batch: SinkBatch) {
    if (this.failuresLeft > 0) {
      this.failuresLeft--;
      this.events.push('apply failed');
      throw new Error('redis down');
    }
    this.events.push(`apply ${batch.operations.map((o) => ('key' in o ? o.key : '')).join(',')}`);
  }
  async close() {
    this.events.push('sink close');
  }
}

const batch = (ids: number[], position: string | null): SourceBatch => ({ changes: ids.map(change), oldestCommitTimeMs: 0, commitTimesMs: [], position });

describe('Worker', () => {
  it('acknowledges a batch only after the sink applied it, retrying in between, in order', async () => {
    const source = new ScriptedSource([batch([1, 2], 'p1'), batch([3], null), batch([4], 'p2')]);
    const sink = new FlakySink(2, source.events);
    const stats = new WorkerStats();
    const worker = new Worker({ source, sink, rules, maxChanges: 100, logger: silentLogger(), stats, retry: { initialMs: 1, maxMs: 2 } });
    await worker.start();
    await expect.poll(() => source.events.filter((e) => e.startsWith('ack')).length).toBe(3);
    await worker.stop();
    expect(source.events).toEqual([
      'apply failed',
      'apply failed',
      'apply item:1,item:2',
      'ack p1',
      'apply item:3',
      'ack null',
      'apply item:4',
      'ack p2',
      'close',
      'sink close',
    ]);
    expect(stats.retries).toBe(2);
    expect(stats.changes).toBe(4);
    expect(worker.state).toBe('stopped');
    expect(worker.error).toBeNull();
  });

  it('a forced stop abandons a batch the sink cannot apply, without acknowledging it', async () => {
    const source = new ScriptedSource([batch([1], 'p1')]);
    const sink = new FlakySink(Number.POSITIVE_INFINITY, source.events);
    const worker = new Worker({ source, sink, rules, maxChanges: 100, logger: silentLogger(), stats: new WorkerStats(), retry: { initialMs: 1, maxMs: 5 }, drainTimeoutMs: 60_000 });
    await worker.start();
    await expect.poll(() => source.events.length).toBeGreaterThan(2);
    const graceful = worker.stop();
    await worker.stop({ force: true });
    await graceful;
    expect(source.events).not.toContain('ack p1');
    expect(source.events.slice(-2)).toEqual(['close', 'sink close']);
  });

  it('stop() and start() are idempotent, and a stop during start waits for it', async () => {
    const source = new ScriptedSource([]);
    const worker = new Worker({ source, sink: new FlakySink(0, source.events), rules, maxChanges: 10, logger: silentLogger(), stats: new WorkerStats() });
    const started = worker.start();
    const stopped = worker.stop();
    expect(worker.start()).toBe(started);
    await started;
    await Promise.all([stopped, worker.stop()]);
    expect(worker.state).toBe('stopped');
    expect(source.events.filter((e) => e === 'close')).toHaveLength(1);
  });

  it('a failing source stops the worker with its error', async () => {
    const source = new ScriptedSource([]);
    source.next = async () => {
      throw new Error('slot dropped');
    };
    const worker = new Worker({ source, sink: new FlakySink(0, source.events), rules, maxChanges: 10, logger: silentLogger(), stats: new WorkerStats() });
    await worker.start();
    await worker.finished();
    expect(worker.state).toBe('failed');
    expect(worker.error?.message).toBe('slot dropped');
  });
});
