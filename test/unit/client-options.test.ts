import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { createCache, type CacheOptions } from '../../src/client/index.js';

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
    ['stampede.waitMs negative', { stampede: { waitMs: -1 } }, /stampede\.waitMs/],
    ['stampede.maxWaitMs negative', { stampede: { maxWaitMs: -1 } }, /stampede\.maxWaitMs/],
    ['leaseTtlMs 0', { leaseTtlMs: 0 }, /leaseTtlMs/],
    ['ttlJitter 1', { ttlJitter: 1 }, /ttlJitter/],
  ];

  it.each(bad)('%s is a RangeError', (_, options, message) => {
    expect(() => createCache(redis, options)).toThrow(RangeError);
    expect(() => createCache(redis, options)).toThrow(message);
  });
});
