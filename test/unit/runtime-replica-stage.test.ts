import { describe, expect, it } from 'vitest';
import type { Change, KeyOperation } from '../../src/core/change.js';
import { ReplicaStage, type ReplayWatch } from '../../src/runtime/replica-stage.js';
import type { SinkBatch } from '../../src/ports/sink.js';
import type { SourceBatch } from '../../src/ports/source.js';

/** Replicas whose replay position the test moves by hand. */
class HandReplicas implements ReplayWatch {
  replayed = 0n;
  private waiters: Array<() => void> = [];
  closed = false;
  async start(): Promise<void> {}
  async waitReplayed(lsn: bigint): Promise<boolean> {
    while (!this.closed && this.replayed <= lsn) await new Promise<void>((resolve) => this.waiters.push(resolve));
    return !this.closed;
  }
  replay(to: bigint): void {
    this.replayed = to;
    for (const w of this.waiters.splice(0)) w();
  }
  async close(): Promise<void> {
    this.closed = true;
    for (const w of this.waiters.splice(0)) w();
  }
}

const change = (version: bigint): Change => ({
  schema: 'public', table: 't', op: 'update', before: null, after: { id: '1' }, keyColumns: ['id'], version, position: String(version),
});
const batch = (name: string, ...versions: bigint[]): SourceBatch => ({
  changes: versions.map(change), oldestCommitTimeMs: 0, commitTimesMs: [], position: name, appliedPosition: `0/${name}`,
});
const ops: KeyOperation[] = [{ action: 'delete', key: 'k' }, { action: 'bump', key: 'v', version: 1n }];
const tick = () => new Promise((resolve) => setImmediate(resolve));

function stage(replicas: HandReplicas) {
  const applied: SinkBatch[] = [];
  const acked: unknown[] = [];
  const s = new ReplicaStage({
    watch: replicas,
    apply: async (b) => {
      applied.push(b);
      return true;
    },
    acknowledge: async (b) => {
      acked.push(b.position);
    },
    onError: (err) => {
      throw err;
    },
  });
  s.start();
  return { s, applied, acked };
}

describe('ReplicaStage', () => {
  it('applies a batch again once the replicas replayed its last commit, then acknowledges, in order', async () => {
    const replicas = new HandReplicas();
    const { s, applied, acked } = stage(replicas);
    await s.push(batch('A', 10n, 20n), ops);
    await s.push(batch('B', 30n), ops);
    await tick();
    expect(acked).toEqual([]);
    replicas.replay(20n); // at 20: the commit at 20 is not replayed past yet
    await tick();
    expect(acked).toEqual([]);
    replicas.replay(25n);
    await tick();
    await tick();
    expect(acked).toEqual(['A']);
    // Bumps are not repeated; the applied position goes with the second pass.
    expect(applied).toEqual([{ operations: [{ action: 'delete', key: 'k' }], deadLetters: [], appliedPosition: '0/A' }]);
    replicas.replay(31n);
    await tick();
    await tick();
    expect(acked).toEqual(['A', 'B']);
    await s.stop();
  });

  it('does not acknowledge what is still waiting when it stops: the source sends it again', async () => {
    const replicas = new HandReplicas();
    const { s, acked } = stage(replicas);
    await s.push(batch('A', 10n), ops);
    await s.stop();
    expect(acked).toEqual([]);
    expect(replicas.closed).toBe(true);
  });

  it('passes a batch with nothing to invalidate without waiting, after the ones before it', async () => {
    const replicas = new HandReplicas();
    const { s, acked, applied } = stage(replicas);
    await s.push(batch('A', 10n), ops);
    await s.push(batch('B'), []);
    await tick();
    expect(acked).toEqual([]);
    replicas.replay(11n);
    await tick();
    await tick();
    await tick();
    expect(acked).toEqual(['A', 'B']);
    expect(applied.at(-1)).toEqual({ operations: [], deadLetters: [], appliedPosition: '0/B' });
    await s.stop();
  });
});
