/**
 * Names shared by the cache-aside client and the worker. Pure functions with no dependencies, so the
 * worker can import them without loading the client.
 *
 * A lease is the right to fill one cache key: a reader that misses takes it (a random token, short
 * TTL), reads the database, and writes the value only if it still holds the lease. The worker deletes
 * the lease whenever it deletes the key, so a value read before a change can never be written after
 * the change's invalidation.
 */

/** Prefix of every lease key. The lease of the full key name K is the Redis key `cdc-lease:K`. */
export const DEFAULT_LEASE_PREFIX = 'cdc-lease:';

/** Prefix of the stale copies kept with `keepStale`: the stale copy of K is `cdc-stale:K`. */
export const DEFAULT_STALE_PREFIX = 'cdc-stale:';

/**
 * The Redis key of the fill lease on a cache key. `fullKey` is the key's full Redis name, prefix
 * included: `user:1` cached under the key prefix `app:` is `app:user:1`, and its lease is
 * `cdc-lease:app:user:1`. The worker deletes this key in the same step as `fullKey`.
 */
export function leaseKey(fullKey: string, leasePrefix: string = DEFAULT_LEASE_PREFIX): string {
  return leasePrefix + fullKey;
}

/**
 * The Redis key of the stale copy of a cache key (`cdc-stale:app:user:1`). The worker does not delete
 * stale copies: they hold old values by definition, and are only served while another caller fills.
 */
export function staleKey(fullKey: string, stalePrefix: string = DEFAULT_STALE_PREFIX): string {
  return stalePrefix + fullKey;
}
