import { describe, expect, it } from 'vitest';
import { Backoff, sleep } from '../../src/lib/backoff.js';

describe('Backoff', () => {
  const sequences: Array<{ name: string; initialMs: number; maxMs: number; random: number; delays: number[] }> = [
    { name: 'lowest draw: half the ceiling', initialMs: 100, maxMs: 1000, random: 0, delays: [50, 100, 200, 400, 500, 500, 500] },
    { name: 'middle draw', initialMs: 100, maxMs: 1000, random: 0.5, delays: [75, 150, 300, 600, 750, 750] },
    { name: 'highest draw stays under the ceiling', initialMs: 100, maxMs: 1000, random: 0.999999, delays: [100, 200, 400, 800, 1000, 1000] },
    { name: 'ceiling below the initial delay', initialMs: 500, maxMs: 200, random: 0, delays: [100, 100, 100] },
  ];

  it.each(sequences)('$name', ({ initialMs, maxMs, random, delays }) => {
    const b = new Backoff({ initialMs, maxMs, random: () => random });
    expect(delays.map(() => b.next())).toEqual(delays);
    expect(b.attempts).toBe(delays.length);
  });

  it('stays within [ceiling/2, ceiling] for any draw, and never past maxMs', () => {
    const draws = [0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.999999];
    for (const r of draws) {
      const b = new Backoff({ initialMs: 10, maxMs: 5000, random: () => r });
      for (let attempt = 0; attempt < 40; attempt++) {
        const ceiling = Math.min(5000, 10 * 2 ** attempt);
        const d = b.next();
        expect(d).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
        expect(d).toBeLessThanOrEqual(ceiling);
      }
    }
  });

  it('does not overflow after very many attempts', () => {
    const b = new Backoff({ initialMs: 1000, maxMs: 30_000, random: () => 0.5 });
    let last = 0;
    for (let i = 0; i < 10_000; i++) last = b.next();
    expect(last).toBe(22_500);
  });

  it('reset() starts over', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 10_000, random: () => 0 });
    b.next();
    b.next();
    b.next();
    expect(b.attempts).toBe(3);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(50);
  });

  it('uses Math.random when none is given', () => {
    const b = new Backoff({ initialMs: 100, maxMs: 100 });
    for (let i = 0; i < 50; i++) {
      const d = b.next();
      expect(d).toBeGreaterThanOrEqual(50);
      expect(d).toBeLessThanOrEqual(100);
    }
  });
});

describe('sleep', () => {
  it('resolves after the delay', async () => {
    const started = Date.now();
    await sleep(20);
    expect(Date.now() - started).toBeGreaterThanOrEqual(15);
  });

  it('resolves early, without throwing, when the signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    const done = sleep(60_000, controller.signal);
    setTimeout(() => controller.abort(), 5);
    await expect(done).resolves.toBeUndefined();
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('resolves at once when the signal has already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    const started = Date.now();
    await sleep(60_000, controller.signal);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('removes its abort listener when the delay passes', async () => {
    const controller = new AbortController();
    let added = 0;
    let removed = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<AbortSignal['addEventListener']>) => {
      added++;
      add(...args);
    }) as AbortSignal['addEventListener'];
    signal.removeEventListener = ((...args: Parameters<AbortSignal['removeEventListener']>) => {
      removed++;
      remove(...args);
    }) as AbortSignal['removeEventListener'];
    await sleep(1, signal);
    expect(added).toBe(1);
    expect(removed).toBe(1);
  });
});
