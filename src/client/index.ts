/**
 * `cdc-invalidator/client`: the application side of the cache. A cache-aside reader with fill leases
 * (safe against the race between a database read and a concurrent invalidation), stampede protection,
 * TTL jitter, negative caching, tags and an optional in-process L1 kept in step by the worker's
 * notifications.
 */
export { createCache, NOT_FOUND_MARKER, type Cache } from './cache.js';
export type { CacheErrorPhase, CacheOptions, CacheStats, GetOptions } from './options.js';
export { CacheDecodeError, CacheTimeoutError, UncacheableValueError } from './errors.js';
export { DEFAULT_LEASE_PREFIX, DEFAULT_STALE_PREFIX, leaseKey, staleKey } from './leases.js';
export { jsonSerializer, type Serializer } from './serializer.js';
export { registerTags, tagKey, type RegisterTagsOptions } from './tags.js';
export { globMatch } from './glob.js';
export { L1Cache } from './l1.js';
