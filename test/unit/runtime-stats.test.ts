import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { emptyEvaluation } from '../../src/core/evaluate.js';
import { WorkerStats } from '../../src/runtime/stats.js';

function change(schema: string, table: string, op: Change['op']): Change {
  return { schema, table, op, before: null, after: { id: '1' }, keyColumns: ['id'], version: 1n, position: '0/1' };
}

describe('WorkerStats', () => {
  it('counts changes per table and operation across interleaved runs and batches', async () => {
    const stats = new WorkerStats();
    const batch = (changes: Change[]) => ({ changes, oldestCommitTimeMs: 0, commitTimesMs: [], position: null });
    stats.batchApplied(
      batch([
        change('public', 'a', 'insert'),
        change('public', 'a', 'insert'),
        change('public', 'b', 'update'),
        change('public', 'a', 'insert'),
        change('other', 'a', 'insert'),
        change('public', 'a', 'delete'),
      ]),
      emptyEvaluation(),
      0.001,
      Date.now(),
    );
    stats.batchApplied(batch([change('public', 'b', 'update')]), emptyEvaluation(), 0.001, Date.now());
    const values = (await stats.metrics.changes.get()).values.map((v) => `${String(v.labels['table'])} ${String(v.labels['op'])} ${v.value}`);
    expect(values.sort()).toEqual(['other.a insert 1', 'public.a delete 1', 'public.a insert 3', 'public.b update 2']);
    expect(stats.changes).toBe(7);
  });
});
