// The cache-aside client against a real Redis: leases, stampedes, expiry, errors, negative caching,
// tags, stale copies and the L1. The worker's deletions are made with the worker's own scripts.
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createCache, leaseKey, NOT_FOUND_MARKER, staleKey, tagKey, type Cache, type CacheOptions, type Serializer } from '../../src/client/index.js';
import { notificationMessages } from '../../src/sinks/redis/notify.js';
import { ScriptCache, TAG_STEP_SCRIPT } from '../../src/sinks/redis/scripts.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

// These tests are not about timeouts: a per-command timeout no stall of a busy machine reaches.
const OPERATION_TIMEOUT_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A promise the test settles by hand. */
function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe.skipIf(servicesMissing('redis'))('cache-aside client', () => {
  let url: string;
  let admin: Redis;
  const clients: Redis[] = [];
  const caches: Cache[] = [];
  let prefix: string;

  beforeAll(async () => {
    url = (await sharedRedis()).url();
    admin = new Redis(url);
  });
  afterAll(() => admin.disconnect());
  afterEach(async () => {
    for (const cache of caches.splice(0)) await cache.close();
    for (const client of clients.splice(0)) client.disconnect();
  });

  function client(options: RedisOptions = {}): Redis {
    const c = new Redis(url, options);
    c.on('error', () => undefined);
    clients.push(c);
    return c;
  }

  function cache(options: CacheOptions = {}, redis = client()): Cache {
    prefix = options.keyPrefix ?? prefix;
    const c = createCache(redis, { keyPrefix: prefix, operationTimeoutMs: OPERATION_TIMEOUT_MS, ...options });
    caches.push(c);
    return c;
  }

  beforeAll(() => {
    prefix = `${uniqueName('c')}:`;
  });

  it('a miss runs the loader and fills with a jittered TTL; a hit does not run it', async () => {
    const c = cache({ ttlSeconds: 60, ttlJitter: 0.1 });
    let calls = 0;
    const loader = async () => {
      calls++;
      return { id: 1, name: 'Ada' };
    };
    expect(await c.get('user:1', loader)).toEqual({ id: 1, name: 'Ada' });
    expect(await c.get('user:1', loader)).toEqual({ id: 1, name: 'Ada' });
    expect(calls).toBe(1);
    expect(await admin.get(`${prefix}user:1`)).toBe('{"id":1,"name":"Ada"}');
    const ttl = await admin.pttl(`${prefix}user:1`);
    expect(ttl).toBeGreaterThan(53_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
    // The lease is gone once the value is written.
    expect(await admin.exists(leaseKey(`${prefix}user:1`))).toBe(0);
    expect(c.stats).toMatchObject({ leases: 1, fills: 1, hits: 1 });
  });

  it('stampede: 100 concurrent misses over 10 connections run the loader once', async () => {
    const instances = Array.from({ length: 10 }, () => cache({ stampede: { waitMs: 10, maxWaitMs: 5000 } }));
    let calls = 0;
    const loader = async () => {
      calls++;
      await sleep(200);
      return 'hot';
    };
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => instances[i % 10]!.get('hot', loader)));
    expect(results).toEqual(Array(100).fill('hot'));
    expect(calls).toBe(1);
    const totals = instances.reduce((sum, c) => ({ leases: sum.leases + c.stats.leases, hits: sum.hits + c.stats.hits, uncached: sum.uncached + c.stats.uncachedLoads }), {
      leases: 0,
      hits: 0,
      uncached: 0,
    });
    expect(totals).toEqual({ leases: 1, hits: 99, uncached: 0 });
  });

  it('a fill is refused when the worker deleted the key and its lease while the loader ran', async () => {
    const c = cache();
    const full = `${prefix}race:1`;
    let db = 'old';
    let calls = 0;
    const loader = async () => {
      calls++;
      const read = db; // the database read
      if (calls === 1) {
        // A change commits and the worker applies it before this caller writes the cache.
        db = 'new';
        await admin.del(full, leaseKey(full));
      }
      return read;
    };
    // The caller gets what it read...
    expect(await c.get('race:1', loader)).toBe('old');
    // ...but the cache does not keep it.
    expect(await admin.exists(full)).toBe(0);
    expect(c.stats).toMatchObject({ fills: 0, fillsRefused: 1 });
    expect(await c.get('race:1', loader)).toBe('new');
    expect(await admin.get(full)).toBe('"new"');
  });

  it('a tag invalidated while the loader ran refuses the fill: the key is in the set from the lease on', async () => {
    const c = cache();
    const full = `${prefix}page:1`;
    const set = tagKey('category:7', prefix);
    const workerScripts = new ScriptCache(client());
    const loader = async () => {
      expect(await admin.smembers(set)).toEqual([full]);
      // The worker's tag step, with leases on.
      await workerScripts.run(TAG_STEP_SCRIPT, [set], [1000, 'del', 'cdc-lease:']);
      return 'page before the change';
    };
    expect(await c.get('page:1', loader, { tags: ['category:7'] })).toBe('page before the change');
    expect(await admin.exists(full)).toBe(0);
    expect(c.stats.fillsRefused).toBe(1);
    // A fill that is not interrupted registers the key, with the tag set living at least as long.
    await c.get('page:1', async () => 'page', { tags: ['category:7'], ttlSeconds: 100 });
    expect(await admin.smembers(set)).toEqual([full]);
    expect(await admin.ttl(set)).toBeGreaterThanOrEqual(100);
  });

  it('a filler that dies leaves its lease to expire; the next caller then loads and fills', async () => {
    const dead = cache({ leaseTtlMs: 1000 });
    const never = deferred<string>();
    void dead.get('orphan', () => never.promise); // a process that took the lease and died
    await waitFor(async () => (await admin.exists(leaseKey(`${prefix}orphan`))) === 1);
    const next = cache({ stampede: { waitMs: 20, maxWaitMs: 3000 } });
    let calls = 0;
    const started = Date.now();
    expect(
      await next.get('orphan', async () => {
        calls++;
        return 'loaded';
      }),
    ).toBe('loaded');
    expect(calls).toBe(1);
    // It waited for the lease to expire, then took it.
    expect(next.stats.waits).toBeGreaterThan(0);
    expect(Date.now() - started).toBeLessThan(3000);
    expect(next.stats).toMatchObject({ leases: 1, fills: 1, uncachedLoads: 0 });
    expect(await admin.get(`${prefix}orphan`)).toBe('"loaded"');
    never.resolve('late'); // the "dead" filler's late fill is refused: its lease is gone
    await waitFor(() => dead.stats.fillsRefused === 1);
    expect(await admin.get(`${prefix}orphan`)).toBe('"loaded"');
  });

  it('after maxWaitMs a waiter runs the loader itself and fills nothing', async () => {
    const holder = cache({ leaseTtlMs: 10_000 });
    const release = deferred<string>();
    const held = holder.get('slow', () => release.promise);
    await waitFor(async () => (await admin.exists(leaseKey(`${prefix}slow`))) === 1);
    const waiter = cache({ stampede: { waitMs: 10, maxWaitMs: 100 } });
    expect(await waiter.get('slow', async () => 'mine')).toBe('mine');
    expect(waiter.stats).toMatchObject({ uncachedLoads: 1, fills: 0 });
    expect(await admin.exists(`${prefix}slow`)).toBe(0);
    release.resolve('holder');
    expect(await held).toBe('holder');
    expect(await admin.get(`${prefix}slow`)).toBe('"holder"');
  });

  it('keepStale serves the previous value, without waiting, while another caller fills', async () => {
    const opts: CacheOptions = { keepStale: { ttlSeconds: 3600 }, stampede: { waitMs: 10, maxWaitMs: 5000 } };
    const a = cache(opts);
    const full = `${prefix}stale:1`;
    await a.get('stale:1', async () => 'v1');
    expect(await admin.get(staleKey(full))).toBe('"v1"');
    expect(await admin.pttl(staleKey(full))).toBeGreaterThan(3_500_000);
    await admin.del(full, leaseKey(full)); // invalidated; the stale copy stays
    const release = deferred<string>();
    const filling = a.get('stale:1', () => release.promise);
    await waitFor(async () => (await admin.exists(leaseKey(full))) === 1);
    const b = cache(opts);
    expect(await b.get('stale:1', async () => 'not run')).toBe('v1');
    expect(b.stats).toMatchObject({ staleServed: 1, waits: 0 });
    release.resolve('v2');
    expect(await filling).toBe('v2');
    expect(await admin.get(staleKey(full))).toBe('"v2"');
  });

  it('negative caching stores "not found" for negativeTtlSeconds; without it nothing is stored', async () => {
    const neg = cache({ negativeTtlSeconds: 5 });
    let calls = 0;
    const missing = async (): Promise<{ id: number } | undefined> => {
      calls++;
      return undefined;
    };
    expect(await neg.get('user:404', missing)).toBeUndefined();
    expect(await neg.get('user:404', missing)).toBeUndefined();
    expect(calls).toBe(1);
    expect(await admin.getBuffer(`${prefix}user:404`)).toEqual(NOT_FOUND_MARKER);
    expect(await admin.pttl(`${prefix}user:404`)).toBeLessThanOrEqual(5000);

    const plain = cache();
    expect(await plain.get('user:405', missing)).toBeUndefined();
    expect(await plain.get('user:405', missing)).toBeUndefined();
    expect(calls).toBe(3);
    expect(await admin.exists(`${prefix}user:405`, leaseKey(`${prefix}user:405`))).toBe(0);
  });

  it('a loader that throws releases the lease and the error reaches the caller', async () => {
    const c = cache();
    await expect(c.get('boom', async () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    expect(await admin.exists(leaseKey(`${prefix}boom`))).toBe(0);
    expect(await c.get('boom', async () => 'ok')).toBe('ok');
  });

  it('Redis failing during the fill: the caller still gets the loader value', async () => {
    const redis = client({ maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null });
    await waitFor(() => redis.status === 'ready');
    const errors: string[] = [];
    const c = cache({ onError: (err, during) => errors.push(`${during}: ${err.message}`) }, redis);
    const value = await c.get('fill-fails', async () => {
      redis.disconnect(); // the connection drops while the database is read
      return { rows: 3 };
    });
    expect(value).toEqual({ rows: 3 });
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^fill: /);
    // Redis unreachable from the start: every call is served by the loader.
    expect(await c.get('fill-fails', async () => 'direct')).toBe('direct');
    expect(c.stats).toMatchObject({ uncachedLoads: 1, fills: 0 });
    expect(errors[1]).toMatch(/^read: /);
  });

  it('a server-side error during the fill (a tag name holding a string) writes nothing and returns the value', async () => {
    const errors: string[] = [];
    const c = cache({ onError: (err, during) => errors.push(`${during}: ${err.message}`) });
    const value = await c.get(
      'wrongtype',
      async () => {
        await admin.set(tagKey('broken', prefix), 'not a set');
        return 'v';
      },
      { tags: ['broken'] },
    );
    expect(value).toBe('v');
    expect(errors[0]).toMatch(/^fill: .*WRONGTYPE/);
    expect(await admin.exists(`${prefix}wrongtype`)).toBe(0);
  });

  it('a value the serializer rejects is returned, not cached, and its lease released', async () => {
    const errors: string[] = [];
    const c = cache({ onError: (err, during) => errors.push(`${during}: ${err.message}`) });
    expect(await c.get('bigint', async () => ({ n: 1n }))).toEqual({ n: 1n });
    expect(errors[0]).toMatch(/^fill: .*BigInt/);
    expect(await admin.exists(`${prefix}bigint`, leaseKey(`${prefix}bigint`))).toBe(0);
  });

  it('pluggable serialisation: Buffers in and out', async () => {
    const raw: Serializer = {
      serialize: (value) => Buffer.from(value as Uint8Array),
      deserialize: (data) => new Uint8Array(data),
    };
    const c = cache({ serializer: raw });
    const bytes = new Uint8Array([0, 255, 1, 128, 10]);
    await c.get('bin', async () => bytes);
    expect(await admin.getBuffer(`${prefix}bin`)).toEqual(Buffer.from(bytes));
    expect(await c.get('bin', async () => new Uint8Array())).toEqual(bytes);
  });

  it('refuses an ioredis client with its own keyPrefix', () => {
    expect(() => createCache(client({ keyPrefix: 'x:', lazyConnect: true }))).toThrow(/keyPrefix/);
  });

  it('L1: served in process, dropped by the notification of its key, tag or pattern, emptied on resubscribe', async () => {
    const channel = `${prefix}invalidations`;
    const c = cache({ l1: { channel, ttlMs: 60_000 } });
    await waitFor(() => c.l1Active, { message: 'L1 subscribed' });
    let loads = 0;
    const loader = async () => ++loads;
    await c.get('a', loader);
    await c.get('b', loader, { tags: ['t'] });
    await c.get('list:7:1', loader);
    await c.get('a', loader);
    await c.get('b', loader);
    await c.get('list:7:1', loader);
    expect(c.stats.l1Hits).toBe(3);

    // The worker deleted nothing in Redis here: a dropped L1 entry is read from Redis again.
    const publish = async (keys: string[], tags: string[], patterns: string[]) => {
      for (const m of notificationMessages({ keys, tags, patterns })) await admin.publish(channel, m);
    };
    const hitsBefore = c.stats.hits;
    await publish([`${prefix}a`], [], []);
    await waitFor(async () => (await c.get('a', loader), c.stats.hits === hitsBefore + 1), { message: 'key a dropped' });
    await publish([], ['t'], []);
    await waitFor(async () => (await c.get('b', loader), c.stats.hits === hitsBefore + 2), { message: 'tag t dropped' });
    await publish([], [], [`${prefix}list:7:*`]);
    await waitFor(async () => (await c.get('list:7:1', loader), c.stats.hits === hitsBefore + 3), { message: 'pattern dropped' });
    expect(loads).toBe(3);

    // A dropped subscription: the L1 is out of use until subscribed again, then starts empty.
    const l1HitsBefore = c.stats.l1Hits;
    await c.get('a', loader);
    expect(c.stats.l1Hits).toBe(l1HitsBefore + 1);
    await admin.client('KILL', 'TYPE', 'pubsub');
    await waitFor(() => !c.l1Active, { message: 'L1 off', intervalMs: 1 });
    await waitFor(() => c.l1Active, { message: 'L1 back' });
    await c.get('a', loader);
    expect(c.stats.l1Hits).toBe(l1HitsBefore + 1);
  });
});
