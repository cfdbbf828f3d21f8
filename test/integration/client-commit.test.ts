// Read-your-writes: waitForCommit against the applied position the worker records in Redis. The worker's
// writer is not used here: the tests write `<keyPrefix>cdc-invalidator:applied` as the worker does.
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appliedKey, createCache, type Cache, type CacheErrorPhase, type CacheOptions } from '../../src/client/index.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

// These tests are not about timeouts: a per-command timeout no stall of a busy machine reaches.
const OPERATION_TIMEOUT_MS = 10_000;

describe.skipIf(servicesMissing('redis'))('cache.waitForCommit', () => {
  let url: string;
  let admin: Redis;
  const cleanup: Array<() => Promise<void> | void> = [];
  let prefix: string;
  let errors: Array<{ err: Error; during: CacheErrorPhase }>;

  beforeAll(async () => {
    url = (await sharedRedis()).url();
    admin = new Redis(url);
  });
  afterAll(() => admin.disconnect());
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step();
  });

  function cache(options: CacheOptions = {}, redisUrl = url): Cache {
    prefix = `${uniqueName('rw')}:`;
    errors = [];
    const redis = new Redis(redisUrl);
    redis.on('error', () => undefined);
    cleanup.push(() => redis.disconnect());
    const c = createCache(redis, {
      keyPrefix: prefix,
      operationTimeoutMs: OPERATION_TIMEOUT_MS,
      onError: (err, during) => errors.push({ err, during }),
      ...options,
    });
    cleanup.push(() => c.close());
    return c;
  }

  const setApplied = (lsn: string) => admin.set(appliedKey(prefix), lsn);

  it('true at once when the applied position is at or past the LSN', async () => {
    const c = cache();
    await setApplied('0/16B3748');
    expect(await c.waitForCommit('0/16B3748')).toBe(true);
    expect(await c.waitForCommit('0/16B3747')).toBe(true);
    expect(await c.waitForCommit('0/16b3700')).toBe(true);
    expect(errors).toEqual([]);
  });

  it('compares as numbers, high part then low part, never as text', async () => {
    const c = cache();
    await setApplied('1/0');
    expect(await c.waitForCommit('0/FFFFFFFF', { timeoutMs: 0 })).toBe(true);
    await setApplied('0/9');
    expect(await c.waitForCommit('0/10', { timeoutMs: 0 })).toBe(false); // "0/9" > "0/10" as text
    await setApplied('A/0');
    expect(await c.waitForCommit('9/FFFFFFFF', { timeoutMs: 0 })).toBe(true);
    expect(await c.waitForCommit('10/0', { timeoutMs: 0 })).toBe(false);
  });

  it('waits until the worker records a position at or past the LSN', async () => {
    const c = cache();
    await setApplied('0/100');
    const waiting = c.waitForCommit('0/200', { timeoutMs: 30_000 });
    let settled = false;
    void waiting.then(() => (settled = true));
    await setApplied('0/1FF');
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);
    await setApplied('0/2A0');
    expect(await waiting).toBe(true);
  });

  it('false when the timeout passes first; also when the worker never wrote a position', async () => {
    const c = cache();
    expect(await c.waitForCommit('0/1', { timeoutMs: 50 })).toBe(false);
    await setApplied('0/5');
    expect(await c.waitForCommit('0/6', { timeoutMs: 50 })).toBe(false);
    expect(errors).toEqual([]);
  });

  it('uses the key prefix: another prefix\'s position does not count', async () => {
    const c = cache();
    await admin.set(appliedKey(`other-${prefix}`), 'FFFFFFFF/FFFFFFFF');
    expect(await c.waitForCommit('0/1', { timeoutMs: 20 })).toBe(false);
    await admin.del(appliedKey(`other-${prefix}`));
  });

  it('a stored position that is not an LSN is reported once and never counts as reached', async () => {
    const c = cache();
    await setApplied('not-an-lsn');
    expect(await c.waitForCommit('0/1', { timeoutMs: 100 })).toBe(false);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.during).toBe('commit');
    expect(errors[0]!.err.message).toMatch(/not an LSN/);
  });

  it('with Redis frozen: false within the timeout, the failure reported', async () => {
    const server = await RedisServer.start();
    cleanup.push(() => server.destroy());
    const c = cache({ operationTimeoutMs: 100 }, server.url());
    // Connected: a check that nothing is recorded yet answers without an error (a busy machine may need several tries).
    await waitFor(
      async () => {
        errors.length = 0;
        expect(await c.waitForCommit('0/1', { timeoutMs: 0 })).toBe(false);
        return errors.length === 0;
      },
      { message: 'connected' },
    );
    await server.pause();
    try {
      expect(await c.waitForCommit('0/1', { timeoutMs: 300 })).toBe(false);
    } finally {
      await server.resume();
    }
    expect(errors.map((e) => e.during)).toEqual(['commit']);
  });

  it('with an L1: a confirmed commit empties it, so the next read goes to Redis', async () => {
    const c = cache({ l1: { channel: `${uniqueName('ch')}`, ttlMs: 60_000 } });
    await waitFor(() => c.l1Active, { message: 'L1 subscribed' });
    await c.get('user:1', async () => 'old');
    await c.get('user:1', async () => 'old');
    expect(c.stats.l1Hits).toBe(1);
    // The worker applied the commit (deleted the key) but its notification has not arrived here.
    await admin.del(`${prefix}user:1`);
    await setApplied('0/500');
    expect(await c.waitForCommit('0/500')).toBe(true);
    expect(await c.get('user:1', async () => 'new')).toBe('new');
    expect(c.stats.l1Hits).toBe(1);
  });
});
