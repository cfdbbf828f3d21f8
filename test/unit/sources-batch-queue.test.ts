import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { BatchQueue, type Taken } from '../../src/sources/batch-queue.js';

function c(id: number): Change {
  return {
    schema: 'public',
    table: 't',
    op: 'insert',
    before: null,
    after: { id: String(id) },
    keyColumns: ['id'],
    version: BigInt(id),
    position: `0/${id}`,
  };
}

/** Queue entries: a number is a change with that id, a string is a position marker. */
type Item = number | string;

function fill(q: BatchQueue<string>, items: Item[], commitTimeMs = (i: number) => 1000 + i): void {
  items.forEach((item, i) => {
    if (typeof item === 'number') q.pushChange(c(item), commitTimeMs(i));
    else q.pushPosition(item, commitTimeMs(i));
  });
}

const ids = (t: Taken<string> | null): string[] => (t === null ? [] : t.changes.map((ch) => ch.after!['id']!));

/** Lets pending immediates (the queue's hand-over) and the promise reactions after them run. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await turn();
}

/** Starts a take and records when it settles. */
function watch(q: BatchQueue<string>, maxChanges: number) {
  const state: { done: boolean; value: Taken<string> | null | undefined; error: unknown } = { done: false, value: undefined, error: undefined };
  const promise = q.take(maxChanges).then(
    (v) => {
      state.done = true;
      state.value = v;
    },
    (err: unknown) => {
      state.done = true;
      state.error = err;
    },
  );
  return { state, promise };
}

describe('BatchQueue.take: what one take hands over', () => {
  const cases: Array<{ name: string; items: Item[]; max: number; changes: string[]; position: string | null; left: number }> = [
    { name: 'everything, ending on a marker', items: [1, 2, 'P1'], max: 10, changes: ['1', '2'], position: 'P1', left: 0 },
    { name: 'the last of several markers', items: [1, 'P1', 2, 'P2', 3, 'P3'], max: 10, changes: ['1', '2', '3'], position: 'P3', left: 0 },
    { name: 'no marker at all: null', items: [1, 2], max: 10, changes: ['1', '2'], position: null, left: 0 },
    { name: 'changes after the last marker: that marker', items: [1, 'P1', 2], max: 10, changes: ['1', '2'], position: 'P1', left: 0 },
    { name: 'cut by maxChanges inside a transaction: null', items: [1, 2, 'P1'], max: 1, changes: ['1'], position: null, left: 1 },
    { name: 'cut by maxChanges: the last marker before the cut', items: [1, 'P1', 2, 3, 'P2'], max: 2, changes: ['1', '2'], position: 'P1', left: 1 },
    { name: 'cut right before a marker: the marker goes with it', items: [1, 2, 'P1', 3, 'P2'], max: 2, changes: ['1', '2'], position: 'P1', left: 1 },
    { name: 'markers after the last change taken are taken too', items: [1, 'P1', 'P2', 2, 'P3'], max: 1, changes: ['1'], position: 'P2', left: 1 },
    { name: 'only markers (a transaction with no mapped change)', items: ['P1', 'P2'], max: 10, changes: [], position: 'P2', left: 0 },
    { name: 'exactly maxChanges', items: [1, 2, 3, 'P1'], max: 3, changes: ['1', '2', '3'], position: 'P1', left: 0 },
  ];

  it.each(cases)('$name', async ({ items, max, changes, position, left }) => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    fill(q, items);
    const taken = await q.take(max);
    expect(ids(taken)).toEqual(changes);
    expect(taken!.position).toBe(position);
    expect(taken!.oldestCommitTimeMs).toBe(1000);
    expect(q.size).toBe(left);
  });

  it('hands the rest over on the next take, in order', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    fill(q, [1, 'P1', 2, 3, 'P2', 4, 5, 'P3']);
    const a = await q.take(2);
    const b = await q.take(2);
    const d = await q.take(2);
    expect([ids(a), a!.position]).toEqual([['1', '2'], 'P1']);
    expect([ids(b), b!.position]).toEqual([['3', '4'], 'P2']);
    expect([ids(d), d!.position]).toEqual([['5'], 'P3']);
    // Oldest commit time of each batch: the first entry it took.
    expect([a!.oldestCommitTimeMs, b!.oldestCommitTimeMs, d!.oldestCommitTimeMs]).toEqual([1000, 1003, 1006]);
    expect(q.isEmpty).toBe(true);
    expect(q.size).toBe(0);
  });

  it('keeps order across many partial takes', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const items: Item[] = [];
    for (let i = 0; i < 1000; i++) {
      items.push(i);
      if (i % 7 === 6) items.push(`P${i}`);
    }
    fill(q, items);
    const seen: string[] = [];
    while (!q.isEmpty) seen.push(...ids(await q.take(13)));
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
  });
});

describe('BatchQueue: size, isEmpty, oldestCommitTimeMs, clear', () => {
  it('counts changes, not markers', () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    expect(q.size).toBe(0);
    expect(q.isEmpty).toBe(true);
    expect(q.oldestCommitTimeMs()).toBeNull();
    q.pushPosition('P0', 500);
    expect(q.size).toBe(0);
    expect(q.isEmpty).toBe(false);
    expect(q.oldestCommitTimeMs()).toBe(500);
    q.pushChange(c(1), 600);
    q.pushChange(c(2), 700);
    expect(q.size).toBe(2);
    expect(q.oldestCommitTimeMs()).toBe(500);
  });

  it('oldestCommitTimeMs follows what is left after a take', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    q.pushChange(c(1), 100);
    q.pushChange(c(2), 200);
    q.pushPosition('P1', 200);
    await q.take(1);
    expect(q.oldestCommitTimeMs()).toBe(200);
    await q.take(1);
    expect(q.oldestCommitTimeMs()).toBeNull();
  });

  it('clear drops everything queued', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    fill(q, [1, 2, 'P1', 3]);
    q.clear();
    expect(q.size).toBe(0);
    expect(q.isEmpty).toBe(true);
    expect(q.oldestCommitTimeMs()).toBeNull();
    const w = watch(q, 10);
    await turns(3);
    expect(w.state.done).toBe(false);
    fill(q, [9, 'P9']);
    await w.promise;
    expect(ids(w.state.value!)).toEqual(['9']);
    expect(w.state.value!.position).toBe('P9');
  });
});

describe('BatchQueue: waiting', () => {
  it('a waiting take is woken by a push and gets everything pushed in the same turn as one batch', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const w = watch(q, 100);
    await turns(2);
    expect(w.state.done).toBe(false);
    fill(q, [1, 2, 'P1', 3, 'P2']);
    // Not before the end of the turn, so that the rest of the same socket read joins the batch.
    expect(w.state.done).toBe(false);
    // Something pushed in a later turn is not waited for.
    setImmediate(() => fill(q, [4]));
    await w.promise;
    expect(ids(w.state.value!)).toEqual(['1', '2', '3']);
    expect(w.state.value!.position).toBe('P2');
    await turn();
    expect(q.size).toBe(1);
  });

  it('pushes from later microtasks of the same turn join the batch', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const w = watch(q, 100);
    await turn();
    q.pushChange(c(1), 1);
    await Promise.resolve();
    q.pushChange(c(2), 2);
    await Promise.resolve();
    await Promise.resolve();
    q.pushPosition('P1', 2);
    await w.promise;
    expect(ids(w.state.value!)).toEqual(['1', '2']);
    expect(w.state.value!.position).toBe('P1');
  });

  it('a waiting take is woken by a marker alone', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const w = watch(q, 100);
    await turn();
    q.pushPosition('P1', 1);
    await w.promise;
    expect(w.state.value).toEqual({ changes: [], position: 'P1', positions: ['P1'], deadLetters: [], oldestCommitTimeMs: 1, commitTimesMs: [1] });
  });

  it('with maxWaitMs, waits from the first arrival, not the latest', async () => {
    let nowMs = 1000;
    const q = new BatchQueue<string>({ maxWaitMs: 50, now: () => nowMs });
    const w = watch(q, 100);
    await turn();
    q.pushChange(c(1), 1);
    await turns(3);
    expect(w.state.done).toBe(false);
    nowMs = 1040;
    q.pushChange(c(2), 2);
    await turns(3);
    expect(w.state.done).toBe(false);
    // 50 ms after the first change: a push now (which wakes the take) finds the wait over. Counted
    // from the latest arrival it would still have 50 ms to go.
    nowMs = 1050;
    q.pushChange(c(3), 3);
    await turns(3);
    expect(w.state.done).toBe(true);
    expect(ids(w.state.value!)).toEqual(['1', '2', '3']);
  });

  it('with maxWaitMs, hands over once maxWaitMs has passed (real timer)', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 20 });
    const started = Date.now();
    const w = watch(q, 100);
    q.pushChange(c(1), 1);
    await w.promise;
    expect(ids(w.state.value!)).toEqual(['1']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
  });

  it('with maxWaitMs, does not wait once maxChanges are queued', async () => {
    const nowMs = 0;
    const q = new BatchQueue<string>({ maxWaitMs: 60_000, now: () => nowMs });
    const w = watch(q, 2);
    await turn();
    fill(q, [1, 2, 3]);
    await turns(3);
    expect(w.state.done).toBe(true);
    expect(ids(w.state.value!)).toEqual(['1', '2']);
  });

  it('with maxWaitMs, does not wait for entries that are already old enough', async () => {
    let nowMs = 0;
    const q = new BatchQueue<string>({ maxWaitMs: 60_000, now: () => nowMs });
    fill(q, [1, 'P1']);
    nowMs = 60_000;
    expect(ids(await q.take(10))).toEqual(['1']);
  });

  it('a clear resets the first arrival time', async () => {
    let nowMs = 0;
    const q = new BatchQueue<string>({ maxWaitMs: 50, now: () => nowMs });
    q.pushChange(c(1), 1);
    q.clear();
    nowMs = 100;
    q.pushChange(c(2), 2);
    const w = watch(q, 10);
    await turns(3);
    // Counted from the change pushed at 100, not the dropped one at 0.
    expect(w.state.done).toBe(false);
    nowMs = 150;
    q.pushChange(c(3), 3);
    await turns(3);
    expect(w.state.done).toBe(true);
    expect(ids(w.state.value!)).toEqual(['2', '3']);
  });
});

describe('BatchQueue: close', () => {
  it('close() makes a waiting take resolve null', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const w = watch(q, 10);
    await turn();
    q.close();
    await w.promise;
    expect(w.state.value).toBeNull();
    expect(w.state.error).toBeUndefined();
  });

  it('close() also ends a take that waits for its batch to fill', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 60_000 });
    const w = watch(q, 10);
    q.pushChange(c(1), 1);
    await turns(2);
    expect(w.state.done).toBe(false);
    q.close();
    await w.promise;
    expect(w.state.value).toBeNull();
  });

  it('close(err) makes a waiting take reject with err', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const w = watch(q, 10);
    await turn();
    const err = new Error('source failed');
    q.close(err);
    await w.promise;
    expect(w.state.error).toBe(err);
  });

  it('a take after close returns null, even with entries queued', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    fill(q, [1, 'P1']);
    q.close();
    await expect(q.take(10)).resolves.toBeNull();
  });

  it('a take after close(err) rejects', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    q.close(new Error('gone'));
    await expect(q.take(10)).rejects.toThrow('gone');
  });

  it('counts bytes and takes no more than maxBytes, but always one change, however large', async () => {
    const q = new BatchQueue<string>({ maxWaitMs: 0 });
    const c = (id: number) => ({ schema: 'public', table: 't', op: 'insert', before: null, after: { id: String(id) }, position: `0/${id}` }) as unknown as Change;
    q.pushChange(c(1), 0, 400);
    q.pushChange(c(2), 0, 400);
    q.pushPosition('P2', 0);
    q.pushChange(c(3), 0, 5_000);
    q.pushChange(c(4), 0, 10);
    q.pushPosition('P4', 0);
    expect(q.bytes).toBe(5_810);
    const first = await q.take(100, 1_000);
    expect(first!.changes.map((x) => x.after!['id'])).toEqual(['1', '2']);
    expect(first!.position).toBe('P2');
    expect(q.bytes).toBe(5_010);
    const second = await q.take(100, 1_000);
    expect(second!.changes.map((x) => x.after!['id'])).toEqual(['3']);
    expect(second!.position).toBeNull();
    const third = await q.take(100, 1_000);
    expect(third!.changes.map((x) => x.after!['id'])).toEqual(['4']);
    expect(third!.position).toBe('P4');
    expect(q.bytes).toBe(0);
    q.pushChange(c(5), 0, 70);
    q.clear();
    expect(q.bytes).toBe(0);
  });
});
