// The client with Redis down or frozen (SIGSTOP), through an ioredis client made as the README makes it
// (`new Redis(url)`, whose own retries take 10-40 s to give up): every get falls back to the loader
// within the client's operationTimeoutMs, and commands that land after their timeout change nothing
// they must not. Each test has its own Redis server, since it stops or freezes it.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { CacheTimeoutError, createCache, leaseKey, type Cache, type CacheErrorPhase, type CacheOptions } from '../../src/client/index.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

/** Far beyond operationTimeoutMs (250 ms) and far below ioredis's own 10-40 s: not a timing test. */
const DEGRADED_WITHIN_MS = 5000;

describe.skipIf(servicesMissing('redis'))('cache-aside client: Redis down or frozen', () => {
  const cleanup: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  async function setup(options: CacheOptions = {}) {
    const server = await RedisServer.start();
    cleanup.push(() => server.destroy());
    const redis = new Redis(server.url());
    redis.on('error', () => undefined);
    cleanup.push(() => redis.disconnect());
    const admin = new Redis(server.url());
    admin.on('error', () => undefined);
    cleanup.push(() => admin.disconnect());
    const errors: Array<{ err: Error; during: CacheErrorPhase }> = [];
    const prefix = `${uniqueName('out')}:`;
    const cache: Cache = createCache(redis, { keyPrefix: prefix, onError: (err, during) => errors.push({ err, during }), ...options });
    cleanup.push(() => cache.close());
    // Connected, and the scripts loaded, before the fault: a busy machine may need several tries.
    await redis.ping();
    await waitFor(async () => (await cache.get('warm', async () => 'up'), cache.stats.fills === 1), { message: 'warm-up fill' });
    errors.length = 0;
    return { server, redis, admin, cache, errors, prefix };
  }

  async function timed<T>(op: () => Promise<T>): Promise<{ value: T; ms: number }> {
    const started = performance.now();
    const value = await op();
    return { value, ms: performance.now() - started };
  }

  it('Redis stopped: get returns the loader value within the operation timeout, then caches again once Redis is back', async () => {
    const { server, cache, errors } = await setup();
    await server.stop();
    const { value, ms } = await timed(() => cache.get('k', async () => 'from db'));
    console.log(`[client-outage] Redis stopped: get answered from the loader in ${ms.toFixed(0)} ms`);
    expect(value).toBe('from db');
    expect(ms).toBeLessThan(DEGRADED_WITHIN_MS);
    expect(errors.at(-1)!.during).toBe('read');
    expect(errors.at(-1)!.err).toBeInstanceOf(CacheTimeoutError);
    await server.restart();
    await waitFor(async () => (await cache.get('k', async () => 'again')) === 'again' && cache.stats.fills >= 2, { message: 'filled again' });
  });

  it('Redis frozen: get returns the loader value within the operation timeout, and after the freeze works as before', async () => {
    const { server, cache, errors } = await setup();
    await server.pause();
    try {
      const { value, ms } = await timed(() => cache.get('k', async () => 'from db'));
      console.log(`[client-outage] Redis frozen: get answered from the loader in ${ms.toFixed(0)} ms`);
      expect(value).toBe('from db');
      expect(ms).toBeLessThan(DEGRADED_WITHIN_MS);
      expect(errors[0]).toMatchObject({ during: 'read', err: expect.any(CacheTimeoutError) });
    } finally {
      await server.resume();
    }
    await waitFor(async () => (await cache.get('k', async () => 'fresh')) === 'fresh' && cache.stats.fills === 2, { message: 'filled after the freeze' });
  });

  it('Redis frozen while the loader runs: the fill that lands after the freeze never outlives an invalidation sent during it', async () => {
    const { server, redis, admin, cache, errors, prefix } = await setup();
    const full = `${prefix}row:1`;
    const value = await cache.get('row:1', async () => {
      await server.pause(); // the fill will wait on the frozen server
      return 'read before the change';
    });
    expect(value).toBe('read before the change');
    expect(errors[0]).toMatchObject({ during: 'fill', err: expect.any(CacheTimeoutError) });
    // The change commits; the worker sends its invalidation, which waits on the frozen server too.
    const invalidation = admin.del(full, leaseKey(full));
    await server.resume();
    await invalidation;
    await redis.ping(); // the late fill has run by now: it was sent before this on the same connection
    // Whichever ran first, the invalidation wins: the fill was refused or its value deleted.
    expect(await admin.exists(full, leaseKey(full))).toBe(0);
  });

  it('Redis frozen past the lease TTL: the late fill is refused', async () => {
    const { server, redis, admin, cache, prefix } = await setup({ leaseTtlMs: 300 });
    const full = `${prefix}row:2`;
    await cache.get('row:2', async () => {
      await server.pause();
      return 'v';
    });
    await new Promise((resolve) => setTimeout(resolve, 600)); // the lease expires on the server's clock
    await server.resume();
    await redis.ping();
    expect(await admin.exists(full, leaseKey(full))).toBe(0);
  });

  it('read_or_lease answered after its timeout: a lease it took is given back', async () => {
    const { server, redis, admin, cache, prefix } = await setup({ leaseTtlMs: 60_000 });
    const full = `${prefix}row:3`;
    // Freeze the server just as the script is sent (the GET before it answered: a miss).
    const callBuffer = redis.callBuffer.bind(redis);
    let frozen = false;
    redis.callBuffer = ((name: string, args: unknown[]) => {
      if (!frozen && (name === 'EVALSHA' || name === 'EVAL')) {
        frozen = true;
        // The script is sent only once the server is frozen.
        return server.pause().then(() => callBuffer(name, args as never));
      }
      return callBuffer(name, args as never);
    }) as typeof redis.callBuffer;
    const before = { ...cache.stats };
    expect(await cache.get('row:3', async () => 'loaded without the cache')).toBe('loaded without the cache');
    expect(cache.stats.uncachedLoads - before.uncachedLoads).toBe(1);
    expect(cache.stats.leases).toBe(before.leases);
    await server.resume();
    await redis.ping(); // the late script has run
    await waitFor(async () => (await admin.exists(leaseKey(full))) === 0, { message: 'the late lease released' });
    // The next caller takes the lease at once instead of waiting out leaseTtlMs.
    expect(await cache.get('row:3', async () => 'filled')).toBe('filled');
    expect(cache.stats.leases - before.leases).toBe(1);
    expect(cache.stats.fills - before.fills).toBe(1);
    expect(cache.stats.waits).toBe(before.waits);
  });

  it('invalidate throws a CacheTimeoutError when Redis does not answer', async () => {
    const { server, cache } = await setup({ operationTimeoutMs: 100 });
    await server.pause();
    try {
      await expect(cache.invalidate('k')).rejects.toBeInstanceOf(CacheTimeoutError);
    } finally {
      await server.resume();
    }
  });
});
