import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { APPLIED_KEY_NAME, appliedKey, createCache, type CacheOptions } from '../../src/client/index.js';
import { nextPollMs } from '../../src/client/waiters.js';

// Never connects: every check here happens before the first command.
const redis = new Redis({ lazyConnect: true });
afterAll(() => redis.disconnect());

describe('createCache option checks', () => {
  const bad: Array<[string, CacheOptions, RegExp]> = [
    ['operationTimeoutMs 0', { operationTimeoutMs: 0 }, /operationTimeoutMs must be a positive finite number, got 0/],
    ['operationTimeoutMs negative', { operationTimeoutMs: -5 }, /operationTimeoutMs/],
    ['operationTimeoutMs NaN', { operationTimeoutMs: Number.NaN }, /operationTimeoutMs/],
    ['operationTimeoutMs Infinity', { operationTimeoutMs: Number.POSITIVE_INFINITY }, /operationTimeoutMs/],
    ['operationTimeoutMs as text', { operationTimeoutMs: '250' as unknown as number }, /operationTimeoutMs must be a positive finite number, got "250"/],
    ['stampede.minWaitMs 0', { stampede: { minWaitMs: 0 } }, /stampede\.minWaitMs/],
    ['stampede.minWaitMs above waitMs', { stampede: { minWaitMs: 50, waitMs: 25 } }, /minWaitMs \(50\) must not exceed stampede\.waitMs \(25\)/],
    ['stampede.waitMs negative', { stampede: { waitMs: -1 } }, /stampede\.waitMs/],
    ['stampede.maxWaitMs negative', { stampede: { maxWaitMs: -1 } }, /stampede\.maxWaitMs/],
    ['leaseTtlMs 0', { leaseTtlMs: 0 }, /leaseTtlMs/],
    ['ttlJitter 1', { ttlJitter: 1 }, /ttlJitter/],
  ];

  it.each(bad)('%s is a RangeError', (_, options, message) => {
    expect(() => createCache(redis, options)).toThrow(RangeError);
    expect(() => createCache(redis, options)).toThrow(message);
  });

  it('a waitMs below the first poll starts the polls at waitMs', () => {
    expect(() => createCache(redis, { stampede: { waitMs: 0.5 } })).not.toThrow();
  });
});

describe('waitForCommit input checks', () => {
  const cache = createCache(redis);

  it.each(['', 'abc', '0/', '/0', '0/16B3748 ', ' 0/16B3748', '0x0/1', '1/2/3', '123456789/0', '-1/0', '16B3748'])('lsn %j is a TypeError', async (lsn) => {
    await expect(cache.waitForCommit(lsn)).rejects.toThrow(TypeError);
    await expect(cache.waitForCommit(lsn)).rejects.toThrow(/pg_current_wal_lsn\(\)::text/);
  });

  it.each([undefined, null, 123, 0x16b3748n, { lsn: '0/1' }])('lsn %s (not a string) is a TypeError', async (lsn) => {
    await expect(cache.waitForCommit(lsn as unknown as string)).rejects.toThrow(TypeError);
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, '1000', null])('timeoutMs %s is a RangeError', async (timeoutMs) => {
    await expect(cache.waitForCommit('0/1', { timeoutMs: timeoutMs as unknown as number })).rejects.toThrow(RangeError);
    await expect(cache.waitForCommit('0/1', { timeoutMs: timeoutMs as unknown as number })).rejects.toThrow(/timeoutMs must be a finite number >= 0/);
  });
});

describe('shared names and the poll schedule', () => {
  it('the applied position lives in <keyPrefix>cdc-invalidator:applied', () => {
    expect(APPLIED_KEY_NAME).toBe('cdc-invalidator:applied');
    expect(appliedKey()).toBe('cdc-invalidator:applied');
    expect(appliedKey('app:')).toBe('app:cdc-invalidator:applied');
  });

  it('polls start short and grow by one step each time up to the cap', () => {
    const schedule = [1];
    while (schedule.length < 30) schedule.push(nextPollMs(schedule.at(-1)!, 1, 25));
    expect(schedule.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
    expect(schedule.slice(24)).toEqual([25, 25, 25, 25, 25, 25]);
    // minWaitMs equal to waitMs: a fixed interval.
    expect(nextPollMs(25, 25, 25)).toBe(25);
  });
});
