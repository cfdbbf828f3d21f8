import { describe, expect, it } from 'vitest';
import { forEachLimited } from '../../src/sinks/redis/limited.js';

const tick = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('forEachLimited', () => {
  it('runs every item with at most the limit at once', async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await forEachLimited([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      running++;
      peak = Math.max(peak, running);
      await tick();
      seen.push(n);
      running--;
    });
    expect(peak).toBe(3);
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  it('starts nothing new after a failure and throws the first error once the others settled', async () => {
    const started: number[] = [];
    let settled = 0;
    const run = forEachLimited([1, 2, 3, 4, 5, 6], 2, async (n) => {
      started.push(n);
      await tick();
      settled++;
      if (n === 2) throw new Error('boom 2');
      if (n === 1) throw new Error('boom 1');
    });
    await expect(run).rejects.toThrow('boom');
    expect(started).toEqual([1, 2]);
    expect(settled).toBe(2);
  });

  it('does nothing for no items', async () => {
    await forEachLimited([], 4, async () => {
      throw new Error('not called');
    });
  });
});
