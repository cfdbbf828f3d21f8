// How long readers take under a steady stream of invalidations of hot keys, with the loader standing in
// for a 5-15 ms database query: plain cache-aside (every miss loads) next to the client's leases, where a
// caller that misses while another fills waits for that fill. Waiting used to cost a fixed 25 ms poll;
// polls now start at 1 ms and grow, and waiters in the filler's process are woken by its fill.
//
// The variants run in interleaved rounds, so load on the machine hits them alike. Figures are printed as
// `[client-latency] ...`; only counts are asserted (a busy 2-core machine makes timings vary).
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createCache, leaseKey, type Cache, type CacheOptions } from '../../src/client/index.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';

const HOT = 50;
const READERS = 48;
const CONNECTIONS = 6;
const ROUND_MS = 2000;
const ROUNDS = 3;
const INVALIDATE_EVERY_MS = 2;

// Timeouts are not measured here: a per-command timeout no stall of a busy machine reaches.
const OPERATION_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const pick = () => 1 + Math.floor(Math.random() * HOT);
const loadDelayMs = () => 5 + Math.random() * 10;

function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

type Kind = 'hit' | 'load' | 'wait' | 'uncached' | 'any';

interface Samples {
  all: number[];
  byKind: Record<Kind, number[]>;
  loads: number;
}

/** One reader's read of key `id`; says what the call was when the variant can tell. */
type Read = (id: number) => Promise<Kind>;

interface Variant {
  name: string;
  readerFor(i: number): Read;
  samples: Samples;
  prefix: string;
  errors: number;
  caches: Cache[];
}

describe.skipIf(servicesMissing('redis'))('client latency under invalidations', () => {
  const connections: Redis[] = [];
  afterAll(() => connections.forEach((c) => c.disconnect()));

  it('waiting callers next to plain cache-aside, same load', { timeout: 180_000 }, async () => {
    const url = (await sharedRedis()).url();
    for (let i = 0; i < CONNECTIONS; i++) connections.push(new Redis(url));
    const admin = new Redis(url);
    connections.push(admin);

    const newSamples = (): Samples => ({ all: [], byKind: { hit: [], load: [], wait: [], uncached: [], any: [] }, loads: 0 });
    const loaderFor = (samples: Samples) => async () => {
      samples.loads++;
      await sleep(loadDelayMs());
      return { v: Math.random() };
    };

    const variants: Variant[] = [];
    const plain: Variant = {
      name: 'plain cache-aside (GET; miss: load, SET EX)',
      samples: newSamples(),
      prefix: `${uniqueName('lat')}:`,
      errors: 0,
      caches: [],
      readerFor: (i) => {
        const r = connections[i % CONNECTIONS]!;
        const load = loaderFor(plain.samples);
        return async (id) => {
          const key = `${plain.prefix}k:${id}`;
          if ((await r.get(key)) !== null) return 'hit';
          await r.set(key, JSON.stringify(await load()), 'EX', 300);
          return 'load';
        };
      },
    };
    variants.push(plain);

    // One cache per reader, as if each reader were its own process: stats tell what each call was,
    // and no waiter is in its filler's process, so only the polls wake it.
    const perReader = (name: string, options: CacheOptions): Variant => {
      const variant: Variant = { name, samples: newSamples(), prefix: `${uniqueName('lat')}:`, errors: 0, caches: [], readerFor: () => async () => 'any' };
      variant.readerFor = (i) => {
        const r = connections[i % CONNECTIONS]!;
        const cache = createCache(r, { keyPrefix: variant.prefix, operationTimeoutMs: OPERATION_TIMEOUT_MS, onError: () => variant.errors++, ...options });
        variant.caches.push(cache);
        const load = loaderFor(variant.samples);
        return async (id) => {
          const before = { ...cache.stats };
          await cache.get(`k:${id}`, load);
          const after = cache.stats;
          if (after.uncachedLoads > before.uncachedLoads) return 'uncached';
          if (after.leases > before.leases) return 'load';
          if (after.waits > before.waits) return 'wait';
          return 'hit';
        };
      };
      return variant;
    };
    variants.push(perReader('leases, fixed 25 ms polls (before), a cache per reader', { stampede: { minWaitMs: 25, waitMs: 25 } }));
    variants.push(perReader('leases, polls from 1 ms (now), a cache per reader', {}));

    // One cache per connection, 8 readers each, as in an application process: the filler wakes the
    // waiters of its own cache. Calls cannot be told apart here, only all of them counted.
    const shared: Variant = {
      name: 'leases, polls from 1 ms (now), a cache per connection',
      samples: newSamples(),
      prefix: `${uniqueName('lat')}:`,
      errors: 0,
      caches: [],
      readerFor: () => async () => 'any',
    };
    const sharedCaches = connections.slice(0, CONNECTIONS).map((r) => createCache(r, { keyPrefix: shared.prefix, operationTimeoutMs: OPERATION_TIMEOUT_MS, onError: () => shared.errors++ }));
    shared.caches = sharedCaches;
    shared.readerFor = (i) => {
      const cache = sharedCaches[i % CONNECTIONS]!;
      const load = loaderFor(shared.samples);
      return async (id) => {
        await cache.get(`k:${id}`, load);
        return 'any';
      };
    };
    variants.push(shared);

    const readers = new Map(variants.map((v) => [v, Array.from({ length: READERS }, (_, i) => v.readerFor(i))]));
    for (let round = 0; round < ROUNDS; round++) {
      for (const variant of variants) {
        let running = true;
        // The worker's part: hot keys deleted with their leases, a steady stream of them.
        const invalidator = (async () => {
          while (running) {
            const full = `${variant.prefix}k:${pick()}`;
            await admin.del(full, leaseKey(full));
            await sleep(INVALIDATE_EVERY_MS);
          }
        })();
        const load = readers.get(variant)!.map(async (read) => {
          while (running) {
            const started = performance.now();
            const kind = await read(pick());
            const ms = performance.now() - started;
            variant.samples.all.push(ms);
            variant.samples.byKind[kind].push(ms);
            await sleep(Math.random() * 2);
          }
        });
        await sleep(ROUND_MS);
        running = false;
        await Promise.all([invalidator, ...load]);
      }
    }

    const f = (x: number) => x.toFixed(1);
    const lines = variants.map((v) => {
      const s = v.samples;
      const kinds = (['hit', 'load', 'wait', 'uncached'] as const)
        .filter((k) => s.byKind[k].length > 0)
        .map((k) => `${k} ${s.byKind[k].length}: p50 ${f(percentile(s.byKind[k], 50))} p99 ${f(percentile(s.byKind[k], 99))}`);
      const polls = v.caches.reduce((n, c) => n + c.stats.waits, 0);
      const waitCalls = s.byKind.wait.length;
      const perWait = waitCalls > 0 ? `, ${(polls / waitCalls).toFixed(1)} per waiting call` : '';
      const pollText = v.caches.length > 0 ? `; polls ${polls}${perWait}` : '';
      return `${v.name}\n    all ${s.all.length} reads: p50 ${f(percentile(s.all, 50))} ms, p99 ${f(percentile(s.all, 99))} ms; loader runs ${s.loads}${pollText}${kinds.length ? `\n    ${kinds.join(' ms; ')} ms` : ''}`;
    });
    console.log(
      `[client-latency] ${READERS} readers over ${CONNECTIONS} connections, ${HOT} hot keys, one deleted every ~${INVALIDATE_EVERY_MS} ms, loader 5-15 ms, ${ROUNDS} interleaved rounds of ${ROUND_MS} ms\n  ${lines.join('\n  ')}`,
    );

    for (const v of variants) {
      expect(v.samples.all.length, v.name).toBeGreaterThan(1000);
      expect(v.errors, v.name).toBe(0);
    }
    // Leases: concurrent misses of a key make one load, so callers wait for it instead of loading.
    for (const v of variants.slice(1, 3)) {
      expect(v.samples.byKind.wait.length, v.name).toBeGreaterThan(0);
      expect(v.samples.byKind.uncached.length, v.name).toBe(0);
    }
    await Promise.all(sharedCaches.map((c) => c.close()));
  });

  it("a waiter in the filler's own process is woken by the fill, not by its next poll", async () => {
    const url = (await sharedRedis()).url();
    const r = new Redis(url);
    connections.push(r);
    // Polls so far apart that only the wake-up can end the wait within the test's timeout.
    const cache = createCache(r, {
      keyPrefix: `${uniqueName('wake')}:`,
      stampede: { minWaitMs: 600_000, waitMs: 600_000, maxWaitMs: 1_200_000 },
      operationTimeoutMs: OPERATION_TIMEOUT_MS,
    });
    let finish!: (v: string) => void;
    const filling = cache.get('k', () => new Promise<string>((resolve) => (finish = resolve)));
    let loads = 0;
    const waiting = Array.from({ length: 5 }, () => cache.get('k', async () => `loaded ${++loads}`));
    await new Promise<void>((resolve) => {
      const check = () => (cache.stats.waits >= 5 ? resolve() : setTimeout(check, 1));
      check();
    });
    finish('filled');
    expect(await filling).toBe('filled');
    expect(await Promise.all(waiting)).toEqual(Array(5).fill('filled'));
    expect(loads).toBe(0);
    expect(cache.stats).toMatchObject({ leases: 1, fills: 1, waits: 5, hits: 5, uncachedLoads: 0 });
  });
});
