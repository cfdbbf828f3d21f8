// The client against data it cannot store or read: values the serializer cannot represent, and cached
// bytes that do not decode. Each is a miss for the caller (the loader's value, onError told), never an
// error, and the bad entry is replaced.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  CacheDecodeError,
  createCache,
  leaseKey,
  staleKey,
  UncacheableValueError,
  type Cache,
  type CacheErrorPhase,
  type CacheOptions,
  type Serializer,
} from '../../src/client/index.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

// These tests are not about timeouts: a per-command timeout no stall of a busy machine reaches.
const OPERATION_TIMEOUT_MS = 10_000;

describe.skipIf(servicesMissing('redis'))('cache-aside client: data it cannot store or decode', () => {
  let url: string;
  let admin: Redis;
  const clients: Redis[] = [];
  const caches: Cache[] = [];
  let prefix: string;
  let errors: Array<{ err: Error; during: CacheErrorPhase }>;

  beforeAll(async () => {
    url = (await sharedRedis()).url();
    admin = new Redis(url);
  });
  afterAll(() => admin.disconnect());
  afterEach(async () => {
    for (const cache of caches.splice(0)) await cache.close();
    for (const client of clients.splice(0)) client.disconnect();
  });

  function cache(options: CacheOptions = {}): Cache {
    prefix = `${uniqueName('bad')}:`;
    errors = [];
    const redis = new Redis(url);
    clients.push(redis);
    const c = createCache(redis, {
      keyPrefix: prefix,
      operationTimeoutMs: OPERATION_TIMEOUT_MS,
      onError: (err, during) => errors.push({ err, during }),
      ...options,
    });
    caches.push(c);
    return c;
  }

  const counting = <T>(value: T) => {
    const loader = async () => {
      loader.calls++;
      return value;
    };
    loader.calls = 0;
    return loader;
  };

  it.each([
    ['a function', () => 42],
    ['an object whose toJSON() returns undefined', { toJSON: () => undefined }],
    ['a symbol', Symbol('s')],
  ])('a value the serializer turns into undefined (%s) is returned, never stored, and its lease released', async (_, value) => {
    const c = cache();
    const loader = counting(value);
    expect(await c.get('k', loader)).toBe(value);
    expect(await c.get('k', loader)).toBe(value);
    expect(loader.calls).toBe(2);
    expect(await admin.exists(`${prefix}k`, leaseKey(`${prefix}k`))).toBe(0);
    expect(errors.map((e) => e.during)).toEqual(['fill', 'fill']);
    expect(errors[0]!.err).toBeInstanceOf(UncacheableValueError);
    expect(c.stats).toMatchObject({ leases: 2, fills: 0, hits: 0 });
  });

  it('a custom serializer returning something other than a string or Buffer is not stored', async () => {
    const c = cache({ serializer: { serialize: () => 17 as unknown as string, deserialize: (d) => d.toString() } });
    expect(await c.get('n', counting('v'))).toBe('v');
    expect(await admin.exists(`${prefix}n`)).toBe(0);
    expect(errors[0]!.err.message).toMatch(/serializer returned number/);
  });

  it.each([
    ['bytes that are not JSON', Buffer.from('{not json')],
    ['an empty value (what an older client stored for undefined)', Buffer.alloc(0)],
    ['binary garbage', Buffer.from([0xff, 0x00, 0xfe])],
  ])('cached %s: a miss; the loader runs, the entry is overwritten, then hits', async (_, bytes) => {
    const c = cache();
    await admin.set(`${prefix}user:1`, bytes);
    const loader = counting({ id: 1 });
    expect(await c.get('user:1', loader)).toEqual({ id: 1 });
    expect(loader.calls).toBe(1);
    expect(await admin.get(`${prefix}user:1`)).toBe('{"id":1}');
    expect(await c.get('user:1', loader)).toEqual({ id: 1 });
    expect(loader.calls).toBe(1);
    expect(errors.map((e) => e.during)).toEqual(['decode']);
    expect(errors[0]!.err).toBeInstanceOf(CacheDecodeError);
    expect(c.stats).toMatchObject({ leases: 1, fills: 1, hits: 1, errors: 1 });
  });

  it('bytes a custom deserializer rejects are a miss too', async () => {
    const strict: Serializer = {
      serialize: (value) => `v1:${JSON.stringify(value)}`,
      deserialize: (data) => {
        const text = data.toString();
        if (!text.startsWith('v1:')) throw new Error('unknown format version');
        return JSON.parse(text.slice(3)) as unknown;
      },
    };
    const c = cache({ serializer: strict });
    await admin.set(`${prefix}p`, 'v0:{"old":true}');
    expect(await c.get('p', counting({ fresh: true }))).toEqual({ fresh: true });
    expect(await admin.get(`${prefix}p`)).toBe('v1:{"fresh":true}');
    expect(errors[0]!.err.message).toMatch(/unknown format version/);
  });

  it('bad bytes replaced by a good value between the GET and read_or_lease: a hit, the good value kept', async () => {
    const c = cache();
    const full = `${prefix}race`;
    await admin.set(full, '{oops');
    const redis = clients.at(-1)!;
    const callBuffer = redis.callBuffer.bind(redis);
    let replaced = false;
    redis.callBuffer = ((name: string, args: unknown[]) => {
      if (replaced || (name !== 'EVALSHA' && name !== 'EVAL')) return callBuffer(name, args as never);
      replaced = true;
      // Another process fills the key just before this caller's script runs.
      return admin.set(full, '"good"').then(() => callBuffer(name, args as never));
    }) as typeof redis.callBuffer;
    const loader = counting('not run');
    expect(await c.get('race', loader)).toBe('good');
    expect(loader.calls).toBe(0);
    expect(await admin.get(full)).toBe('"good"');
    expect(c.stats).toMatchObject({ hits: 1, leases: 0 });
  });

  it('a bad entry whose loader finds nothing (no negative caching) is deleted, not left to fail again', async () => {
    const c = cache();
    await admin.set(`${prefix}gone`, '{oops');
    const loader = counting(undefined);
    expect(await c.get('gone', loader)).toBeUndefined();
    expect(await admin.exists(`${prefix}gone`, leaseKey(`${prefix}gone`))).toBe(0);
    expect(await c.get('gone', loader)).toBeUndefined();
    expect(errors).toHaveLength(1);
  });

  it('a bad entry whose loader throws: the loader error reaches the caller, the entry is gone', async () => {
    const c = cache();
    await admin.set(`${prefix}boom`, '{oops');
    await expect(c.get('boom', async () => Promise.reject(new Error('db down')))).rejects.toThrow('db down');
    expect(await admin.exists(`${prefix}boom`, leaseKey(`${prefix}boom`))).toBe(0);
  });

  it('a stale copy that does not decode is not served: the caller waits for the fill instead', async () => {
    const opts: CacheOptions = { keepStale: { ttlSeconds: 3600 }, stampede: { waitMs: 5, maxWaitMs: 5000 } };
    const holder = cache(opts);
    const full = `${prefix}s`;
    await admin.set(staleKey(full), '{bad stale');
    let finish!: (v: string) => void;
    const filling = holder.get('s', () => new Promise<string>((resolve) => (finish = resolve)));
    await waitFor(async () => (await admin.exists(leaseKey(full))) === 1);
    const waiterErrors: CacheErrorPhase[] = [];
    const redis = new Redis(url);
    clients.push(redis);
    const waiter = createCache(redis, { ...opts, keyPrefix: prefix, operationTimeoutMs: OPERATION_TIMEOUT_MS, onError: (_, during) => waiterErrors.push(during) });
    const waiting = waiter.get('s', async () => 'not run');
    await waitFor(() => waiter.stats.waits >= 2);
    finish('fresh');
    expect(await filling).toBe('fresh');
    expect(await waiting).toBe('fresh');
    expect(waiter.stats).toMatchObject({ staleServed: 0, hits: 1, uncachedLoads: 0 });
    expect(waiterErrors).toEqual(['decode']);
  });

  it('an onError hook that throws changes nothing for the caller', async () => {
    const c = cache({
      onError: () => {
        throw new Error('hook broke');
      },
    });
    await admin.set(`${prefix}x`, '{oops');
    expect(await c.get('x', counting('ok'))).toBe('ok');
    expect(c.stats.errors).toBe(1);
  });
});
