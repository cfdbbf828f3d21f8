// What the client costs per hit and per miss against plain GET / SET on the same Redis, measured in one
// run: the variants are interleaved call by call and each figure is the median call. Printed as `[client-overhead] ...`; only the L1's advantage is asserted.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createCache } from '../../src/client/index.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

const ITERATIONS = 6000;
const WARMUP = 500;
const VALUE = { id: 1, name: 'Ada Lovelace', email: 'ada@example.com', tags: ['a', 'b', 'c'], score: 42.5 };

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

describe.skipIf(servicesMissing('redis'))('client overhead', () => {
  const clients: Redis[] = [];
  afterAll(() => clients.forEach((c) => c.disconnect()));

  it('per hit and per miss, against plain GET/SET', { timeout: 120_000 }, async () => {
    const url = (await sharedRedis()).url();
    const plain = new Redis(url);
    const viaCache = new Redis(url);
    const viaL1 = new Redis(url);
    clients.push(plain, viaCache, viaL1);
    const prefix = `${uniqueName('o')}:`;
    // The counts asserted below assume no call trips the per-command timeout on a busy machine.
    const cache = createCache(viaCache, { keyPrefix: prefix, operationTimeoutMs: 10_000 });
    const l1 = createCache(viaL1, { keyPrefix: prefix, operationTimeoutMs: 10_000, l1: { channel: `${prefix}n`, ttlMs: 60_000 } });
    await waitFor(() => l1.l1Active);
    const load = async () => VALUE;
    await plain.set(`${prefix}hot`, JSON.stringify(VALUE), 'EX', 300);
    let missId = 0;

    const variants: Record<string, () => Promise<unknown>> = {
      'plain hit (GET + JSON.parse)': async () => JSON.parse((await plain.get(`${prefix}hot`))!),
      'client hit (GET)': () => cache.get('hot', load),
      'client L1 hit': () => l1.get('hot', load),
      'plain miss (GET + SET EX)': async () => {
        const key = `${prefix}plain:${++missId}`;
        if ((await plain.get(key)) !== null) return;
        await plain.set(key, JSON.stringify(await load()), 'EX', 300);
      },
      'client miss (GET, read_or_lease, fill)': () => cache.get(`client:${++missId}`, load),
    };
    // Every variant once per iteration, each call timed on its own: load on the machine hits all
    // variants alike, and the median per call ignores the calls a busy scheduler delayed.
    const samples: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]));
    for (let i = 0; i < ITERATIONS; i++) {
      for (const [name, op] of Object.entries(variants)) {
        const started = process.hrtime.bigint();
        await op();
        samples[name]!.push(Number(process.hrtime.bigint() - started) / 1000);
      }
    }
    const us = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v.slice(WARMUP))]));
    const hit = us['client hit (GET)']! / us['plain hit (GET + JSON.parse)']!;
    const miss = us['client miss (GET, read_or_lease, fill)']! / us['plain miss (GET + SET EX)']!;
    const l1Ratio = us['client L1 hit']! / us['plain hit (GET + JSON.parse)']!;
    const lines = Object.entries(us).map(([k, v]) => `${k}: ${v.toFixed(1)} us`);
    console.log(
      `[client-overhead] one call at a time, median of ${ITERATIONS - WARMUP} calls each\n  ${lines.join('\n  ')}\n  hit ratio ${hit.toFixed(2)}x, miss ratio ${miss.toFixed(2)}x, L1 hit ratio ${l1Ratio.toFixed(3)}x`,
    );
    expect(cache.stats.leases).toBe(ITERATIONS);
    expect(cache.stats.fills).toBe(ITERATIONS);
    expect(l1.stats.l1Hits).toBeGreaterThan(ITERATIONS - 10);
    expect(l1Ratio).toBeLessThan(1);
    await l1.close();
  });
});
