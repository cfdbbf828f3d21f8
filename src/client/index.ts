/**
 * `cdc-invalidator/client`: the application side of the cache. A cache-aside reader with fill leases
 * (safe against the race between a database read and a concurrent invalidation), stampede protection,
 * TTL jitter, negative caching, tags, an optional in-process L1 kept in step by the worker's
 * notifications, and read-your-writes through the worker's applied position.
 */
export { createCache, NOT_FOUND_MARKER, type Cache } from './cache.js';
export { createMemcachedCache, type MemcachedCacheOptions } from './memcached-cache.js';
export type { CacheErrorPhase, CacheOptions, CacheStats, GetOptions } from './options.js';
export { DEFAULT_COMMIT_TIMEOUT_MS, type WaitForCommitOptions } from './commit.js';
export { CacheDecodeError, CacheTimeoutError, UncacheableValueError } from './errors.js';
export { APPLIED_KEY_NAME, appliedKey } from '../lib/cache-keys.js';
export { DEFAULT_LEASE_PREFIX, DEFAULT_STALE_PREFIX, leaseKey, staleKey } from '../lib/cache-keys.js';
export { jsonSerializer, type Serializer } from './serializer.js';
export { registerTags, tagKey, type RegisterTagsOptions } from './tags.js';
export { globMatch } from './glob.js';
export { L1Cache } from './l1.js';
