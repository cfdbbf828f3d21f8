/**
 * How a caller waits while another holds the lease of a key. Across processes it polls Redis, with
 * an interval that starts short and grows (`nextPollMs`): a fill usually lands within a few ms, and a
 * fixed interval made every waiter pay it in full. Each interval is one step longer than the one
 * before (1, 2, 3 ms...), so a waiter that has waited t ms learns of a fill at most about sqrt(2t) ms
 * late, after about sqrt(2t) polls. For loaders of a few to a few tens of ms that is sooner, in fewer
 * polls, than doubling (up to t late). Within one process the lease holder also wakes its own waiters
 * as soon as its fill (or release) is done, so they need not wait for the next poll. Both need nothing
 * but the application's one Redis connection.
 */

/** The interval after `previousMs`: one `stepMs` longer, up to `maxMs`. */
export function nextPollMs(previousMs: number, stepMs: number, maxMs: number): number {
  return Math.min(maxMs, previousMs + stepMs);
}

export class FillWaiters {
  private readonly byKey = new Map<string, Set<() => void>>();

  /** Resolves after `ms`, or earlier when `wake(fullKey)` is called. */
  sleep(fullKey: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let waiting = this.byKey.get(fullKey);
      if (waiting === undefined) this.byKey.set(fullKey, (waiting = new Set()));
      const set = waiting;
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && this.byKey.get(fullKey) === set) this.byKey.delete(fullKey);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  /** Wakes every caller of this process waiting on the key (its lease was just given up). */
  wake(fullKey: string): void {
    const waiting = this.byKey.get(fullKey);
    if (waiting === undefined) return;
    for (const done of [...waiting]) done();
  }

  get size(): number {
    return this.byKey.size;
  }
}
