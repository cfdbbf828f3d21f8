import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { compileRules } from '../../src/core/rules.js';
import { silentLogger } from '../../src/log.js';
import { WorkerStats } from '../../src/runtime/stats.js';
import { Worker } from '../../src/runtime/worker.js';
import type { Sink, SinkBatch } from '../../src/ports/sink.js';
import type { Source, SourceBatch, SourceStatus } from '../../src/ports/source.js';

const { rules } = compileRules([{ file: 'm.yaml', rules: [{ table: 'items', invalidate: ['item:{id}'] }] }]);

function change(id: number): Change {
  return { schema: 'public', table: 'items', op: 'insert', before: null, after: { id: String(id) }, keyColumns: ['id'], version: BigInt(id), position: `0/${id}` };
}

/** A source that hands out prepared batches in order and records every acknowledgement. */
class ScriptedSource implements Source {
  readonly events: string[] = [];
  /** Positions of the batches handed out, in order. */
  readonly taken: string[] = [];
  private closed = false;
  private wake: (() => void) | null = null;
  constructor(private readonly batches: SourceBatch[]) {}
  async start() {}
  async next(): Promise<SourceBatch | null> {
    for (;;) {
      if (this.closed) return null;
      const b = this.batches.shift();
      if (b !== undefined) {
        this.taken.push(String(b.position));
        return b;
      }
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

  it('takes the next batch while one is applied, applies them in order, and leaves one taken but not applied unacknowledged on stop', async () => {
    const source = new ScriptedSource([batch([1], 'p1'), batch([2], 'p2')]);
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const sink: Sink = {
      async connect() {},
      isConnected: () => true,
      async apply(b: SinkBatch) {
        const keys = b.operations.map((o) => ('key' in o ? o.key : '')).join(',');
        source.events.push(`applying ${keys}`);
        if (keys === 'item:1') await released;
        source.events.push(`applied ${keys}`);
      },
      async close() {},
    };
    const worker = new Worker({ source, sink, rules, maxChanges: 100, logger: silentLogger(), stats: new WorkerStats() });
    await worker.start();
    // p2 is taken while p1's apply is held, and is not applied before it.
    await expect.poll(() => source.taken).toEqual(['p1', 'p2']);
    expect(source.events).toEqual(['applying item:1']);
    const stopped = worker.stop();
    release();
    await stopped;
    expect(source.events).toEqual(['applying item:1', 'applied item:1', 'ack p1', 'close']);
  });

  it('applies a batch taken during the previous apply once that one is done', async () => {
    const source = new ScriptedSource([batch([1], 'p1'), batch([2], 'p2'), batch([3], 'p3')]);
    const sink = new FlakySink(0, source.events);
    const worker = new Worker({ source, sink, rules, maxChanges: 100, logger: silentLogger(), stats: new WorkerStats() });
    await worker.start();
    await expect.poll(() => source.events.filter((e) => e.startsWith('ack')).length).toBe(3);
    await worker.stop();
    expect(source.events.slice(0, 6)).toEqual(['apply item:1', 'ack p1', 'apply item:2', 'ack p2', 'apply item:3', 'ack p3']);
  });

  it('applies recovery actions through the sink with retries, counted, and gives them up only on a forced stop', async () => {
    const source = new ScriptedSource([]);
    const sink = new FlakySink(1, source.events);
    const stats = new WorkerStats();
    const worker = new Worker({ source, sink, rules, maxChanges: 10, logger: silentLogger(), stats, retry: { initialMs: 1, maxMs: 2 } });
    await worker.start();
    const operations = [{ action: 'delete' as const, key: 'items:all' }, { action: 'bump' as const, key: 'items:version', version: 7n }];
    expect(await worker.applyRecovery(operations)).toBe(true);
    expect(source.events).toEqual(['apply failed', 'apply items:all,items:version']);
    expect(stats.retries).toBe(1);
    expect(stats.keysDeleted).toBe(1);
    expect(stats.keysBumped).toBe(1);
    expect((await stats.metrics.keys.get()).values.filter((v) => v.value > 0).map((v) => [v.labels['action'], v.value])).toEqual([['delete', 1], ['bump', 1]]);

    sink.failuresLeft = Number.POSITIVE_INFINITY;
    const given = worker.applyRecovery(operations);
    await worker.stop({ force: true });
    expect(await given).toBe(false);
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
