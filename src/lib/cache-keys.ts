/**
 * Key names shared by the cache-aside client and the worker: leases, stale copies, tag sets and the
 * applied position. Pure functions with no dependencies, so either side imports them without
 * loading the other.
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

/**
 * The key where the worker records the position it has applied: the worker writes it once
 * everything else of a batch is applied, the client's `waitForCommit` reads it.
 *
 * For the Postgres source the value is an LSN in PostgreSQL's text form (`0/16B3748`, as
 * `pg_current_wal_lsn()::text` prints it); `src/core/lsn.ts` parses and compares it.
 */

/** The key's name after the worker's `redis.keyPrefix`. */
export const APPLIED_KEY_NAME = 'cdc-invalidator:applied';

/** The Redis key holding the applied position: `<keyPrefix>cdc-invalidator:applied`. */
export function appliedKey(keyPrefix = ''): string {
  return keyPrefix + APPLIED_KEY_NAME;
}

/**
 * The Redis key of a tag's set: `<keyPrefix>tag:<tag>`. Its members are full key names, which the
 * worker deletes as they are.
 */
export function tagKey(tag: string, keyPrefix = ''): string {
  return `${keyPrefix}tag:${tag}`;
}
