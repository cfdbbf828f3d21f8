// The cache-aside client on a real memcached: the Redis client's behaviour, with memcached's leases.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CacheTimeoutError, createMemcachedCache, type Cache } from '../../src/client/index.js';
import type { MemcachedCacheOptions } from '../../src/client/memcached-cache.js';
import { MetaConnection } from '../../src/lib/memcached/meta-connection.js';
import { MemcachedServer } from '../harness/memcached.js';
import { servicesMissing, uniqueName } from '../harness/services.js';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});
let server: Promise<MemcachedServer> | undefined;
afterAll(async () => {
  await (await server?.catch(() => undefined))?.destroy();
});
async function memcached(): Promise<MemcachedServer> {
  server ??= MemcachedServer.start();
  return await server;
}

async function cache(options: MemcachedCacheOptions = {}): Promise<{ cache: Cache; errors: Array<[string, Error]>; direct: MetaConnection }> {
  const s = await memcached();
  const errors: Array<[string, Error]> = [];
  const c = createMemcachedCache([s.address], { keyPrefix: `${uniqueName('cl')}:`, onError: (err, during) => errors.push([during, err]), ...options });
  const direct = new MetaConnection({ host: '127.0.0.1', port: s.port, timeoutMs: 2_000 });
  closers.push(() => c.close(), () => direct.close());
  return { cache: c, errors, direct };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

describe.skipIf(servicesMissing('memcached'))('cache-aside client on memcached', () => {
  it('loads once, then serves hits; the fill has the TTL asked for, shortened by jitter', async () => {
    const { cache: c, direct } = await cache({ ttlSeconds: 100, ttlJitter: 0.1 });
    let loads = 0;
    const loader = async () => ({ n: ++loads });
    expect(await c.get('a', loader)).toEqual({ n: 1 });
    expect(await c.get('a', loader)).toEqual({ n: 1 });
    expect(c.stats).toMatchObject({ leases: 1, fills: 1, hits: 1 });
    const [reply] = await direct.request([{ verb: 'mg', key: c.fullKey('a'), flags: ['v', 't'] }]);
    const ttl = Number(reply!.flags.find((f) => f.startsWith('t'))!.slice(1));
    expect(ttl).toBeGreaterThanOrEqual(89);
    expect(ttl).toBeLessThanOrEqual(100);
  });

  it('stampede: 30 concurrent callers of a cold key run the loader once and all get its value', async () => {
    const { cache: c } = await cache({ stampede: { waitMs: 5, maxWaitMs: 5_000 } });
    let loads = 0;
    const loader = async () => {
      loads++;
      await sleep(50);
      return 'v';
    };
    const values = await Promise.all(Array.from({ length: 30 }, () => c.get('hot', loader)));
    expect(values.every((v) => v === 'v')).toBe(true);
    expect(loads).toBe(1);
    expect(c.stats.waits).toBeGreaterThan(0);
  });

  it('an invalidation during the load refuses the fill: the next caller loads the new value', async () => {
    const { cache: c } = await cache();
    let row = 'old';
    const value = await c.get('row', async () => {
      const read = row;
      row = 'new';
      await c.invalidate('row'); // the worker's md, between the read and the fill
      return read;
    });
    expect(value).toBe('old');
    expect(c.stats.fillsRefused).toBe(1);
    expect(await c.get('row', async () => row)).toBe('new');
  });

  it('a loader that throws gives the lease back at once; "not found" is cached only when asked', async () => {
    const { cache: c } = await cache({ stampede: { waitMs: 5, maxWaitMs: 3_000 } });
    await expect(c.get('x', async () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    const started = Date.now();
    expect(await c.get('x', async () => 'after')).toBe('after');
    expect(Date.now() - started).toBeLessThan(1_000);
    let loads = 0;
    const missing = async () => {
      loads++;
      return undefined;
    };
    expect(await c.get('gone', missing)).toBeUndefined();
    expect(await c.get('gone', missing)).toBeUndefined();
    expect(loads).toBe(2);
    expect(await c.get('gone2', missing, { negativeTtlSeconds: 60 })).toBeUndefined();
    expect(await c.get('gone2', missing, { negativeTtlSeconds: 60 })).toBeUndefined();
    expect(loads).toBe(3);
  });

  it('memcached frozen: get returns the loader value within the operation timeout and reports it', async () => {
    const s = await MemcachedServer.start();
    closers.push(() => s.destroy());
    const errors: Array<[string, Error]> = [];
    const c = createMemcachedCache([s.address], { operationTimeoutMs: 500, onError: (err, during) => errors.push([during, err]) });
    closers.push(() => c.close());
    expect(await c.get('k', async () => 1)).toBe(1);
    // A busy machine may have timed out the fill above: only what happens while frozen counts.
    errors.length = 0;
    await s.pause();
    const started = Date.now();
    try {
      expect(await c.get('k2', async () => 2)).toBe(2);
    } finally {
      await s.resume();
    }
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(errors[0]?.[0]).toBe('read');
    expect(errors[0]?.[1]).toBeInstanceOf(CacheTimeoutError);
    // Back to normal: the key filled before the freeze is served (unless that fill timed out above).
    expect([1, 99]).toContain(await c.get('k', async () => 99));
  });

  it('waitForCommit reads the worker\'s applied position; tags, the L1 and lease prefixes need Redis', async () => {
    const { cache: c, direct } = await cache();
    expect(await c.waitForCommit('0/10', { timeoutMs: 0 })).toBe(false);
    await direct.request([{ verb: 'ms', key: c.fullKey('cdc-invalidator:applied'), value: Buffer.from('0/20') }]);
    expect(await c.waitForCommit('0/10', { timeoutMs: 100 })).toBe(true);
    await expect(c.get('t', async () => 1, { tags: ['x'] })).rejects.toThrow('memcached has no sets: tags need Redis');
    const s = await memcached();
    expect(() => createMemcachedCache([s.address], { l1: { channel: 'c' } } as never)).toThrow('l1 needs Redis');
    expect(() => createMemcachedCache([])).toThrow('give at least one server');
  });
});
