import { randomBytes } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { appliedKey, leaseKey, staleKey, tagKey } from '../lib/cache-keys.js';
import { sameSlotName } from '../lib/cluster-slot.js';
import { commitLsn, commitTimeoutMs, waitForApplied, type WaitForCommitOptions } from './commit.js';
import { UncacheableValueError } from './errors.js';
import { decoder, fillPayload, MAX_BAD_READS, statsAndReport, UNDECODABLE } from './fill-values.js';
import { subscribeL1, type L1Subscription } from './l1-subscription.js';
import { cacheSettings, type CacheOptions, type CacheStats, type GetOptions } from './options.js';
import { FILL, READ_OR_LEASE, REGISTER_TAG, RELEASE, runScript } from './scripts.js';
import { withTimeout } from './timeout.js';
import { FillWaiters, nextPollMs } from './waiters.js';

export interface Cache {
  /**
   * The value of `key` (without the key prefix): from L1, from Redis, or from `loader`, which runs
   * at most once at a time per key across every process sharing the Redis (while leases hold).
   * Whatever Redis does or holds, a caller that runs the loader gets the loader's value; loader
   * errors are thrown as they are, and nothing else is.
   */
  get<T>(key: string, loader: () => Promise<T>, options?: GetOptions): Promise<T>;
  /**
   * Read-your-writes: true once the worker has applied every commit up to `lsn` (the text of
   * `pg_current_wal_lsn()` read after the application's COMMIT), false when `timeoutMs` passes first.
   * A TypeError for an `lsn` that is not an LSN, a RangeError for a bad `timeoutMs`.
   */
  waitForCommit(lsn: string, options?: WaitForCommitOptions): Promise<boolean>;
  /**
   * Deletes the key and its lease (a fill in flight is refused) and drops it from this process's L1.
   * Throws when Redis fails or does not answer within `operationTimeoutMs` (the deletion may or may
   * not have happened).
   */
  invalidate(key: string): Promise<void>;
  /** The key's full Redis name. */
  fullKey(key: string): string;
  readonly stats: Readonly<CacheStats>;
  /** Whether the L1 is in use (configured and subscribed). */
  readonly l1Active: boolean;
  /** Stops the L1 subscription (closes the subscriber connection if the cache created it). */
  close(): Promise<void>;
}

export { NOT_FOUND_MARKER } from './fill-values.js';

export function createCache(redis: Redis | Cluster, options: CacheOptions = {}): Cache {
  if (redis.options.keyPrefix || (redis.isCluster && (redis as Cluster).options.redisOptions?.keyPrefix)) {
    throw new TypeError(
      'createCache: the ioredis client has a keyPrefix option; pass the prefix as the cache\'s keyPrefix instead (lease keys must not get it)',
    );
  }
  const settings = cacheSettings(options);
  const { keyPrefix, leasePrefix, leaseTtlMs, leaseSeconds, serializer, staleTtlMs, stalePrefix, operationTimeoutMs } = settings;
  const { stats, report } = statsAndReport(options.onError);
  const decode = decoder(serializer, report);

  // Lease tokens: unique across processes (random) and within one (counter).
  const tokenBase = randomBytes(9).toString('base64url');
  let tokenCount = 0;

  const subscription: L1Subscription | undefined = options.l1 ? subscribeL1(redis, options.l1, report) : undefined;
  const l1 = subscription?.l1;
  const l1Usable = () => subscription?.active === true;
  const waiters = new FillWaiters();

  const fullKey = (key: string) => keyPrefix + key;
  // On a Redis Cluster the lease and the stale copy of a key live in its slot (the scripts touch
  // them together), named as the worker names them (lib/cluster-slot.ts); tag sets, in other
  // slots, are registered by calls of their own, before the lease is asked for.
  const onCluster = redis.isCluster;
  const leaseOf = (full: string) => (onCluster ? sameSlotName(leasePrefix, full) : leaseKey(full, leasePrefix));
  const staleOf = (full: string) => (onCluster ? sameSlotName(stalePrefix, full) : staleKey(full, stalePrefix));
  async function registerTagSets(full: string, tags: readonly string[], tagTtl: string): Promise<void> {
    await Promise.all(tags.map((tag) => command(runScript(redis, REGISTER_TAG, [tagKey(tag, keyPrefix)], [full, tagTtl]), 'register_tag')));
  }
  const ttlMsOf = (seconds: number) => Math.max(1, Math.round(seconds * 1000 * (1 - settings.jitter * Math.random())));
  const command = <T>(promise: Promise<T>, name: string) => withTimeout(promise, operationTimeoutMs, name);

  async function release(lease: string, token: string): Promise<void> {
    try {
      await command(runScript(redis, RELEASE, [lease], [token]), 'release');
    } catch (err) {
      report(err, 'release'); // it expires on its own
    }
  }

  async function get<T>(key: string, loader: () => Promise<T>, getOptions: GetOptions = {}): Promise<T> {
    const full = fullKey(key);
    if (l1 && l1Usable()) {
      const cached = l1.get(full);
      if (cached.found) {
        stats.l1Hits++;
        return cached.value as T;
      }
    }
    const epoch = l1?.epoch ?? 0;
    const tags = getOptions.tags ? [...new Set(getOptions.tags)] : [];
    const ttl = getOptions.ttlSeconds ?? settings.ttlSeconds;
    const negativeTtl = getOptions.negativeTtlSeconds ?? settings.negativeTtlSeconds;
    const tagTtl = String(Math.ceil(Math.max(ttl, negativeTtl ?? 0)) + leaseSeconds);
    const uncached = async () => {
      stats.uncachedLoads++;
      return await loader();
    };
    const lease = leaseOf(full);
    const stale = staleOf(full);
    if (lease === null || stale === null) {
      // A key with a '}' and no hash tag: no lease name shares its slot, so no fill can be made safe.
      report(new UncacheableValueError(full, 'on a Redis Cluster a key with "}" needs a hash tag ({...}) for its lease'), 'read');
      return await uncached();
    }
    const keys = [full, lease, stale, ...(onCluster ? [] : tags.map((tag) => tagKey(tag, keyPrefix)))];
    const clusterTags = onCluster ? tags : [];
    // Hits, the common case, take a plain GET: a script call costs more on both ends. A miss then
    // asks read_or_lease, which reads again (a fill may have landed in between) or takes the lease.
    let first: Buffer | null;
    try {
      first = await command(redis.getBuffer(full), 'GET');
    } catch (err) {
      report(err, 'read');
      return await uncached();
    }
    let bad: Buffer | undefined;
    if (first !== null) {
      const value = decode(full, first);
      if (value !== UNDECODABLE) return hit<T>(full, value, tags, epoch);
      bad = first;
    }
    const deadline = Date.now() + settings.maxWaitMs;
    let pollMs = settings.minWaitMs;
    let badReads = bad ? 1 : 0;
    let wantStale = staleTtlMs > 0;

    for (;;) {
      if (clusterTags.length > 0) {
        try {
          await registerTagSets(full, clusterTags, tagTtl);
        } catch (err) {
          report(err, 'read');
          return await uncached();
        }
      }
      const token = `${tokenBase}.${++tokenCount}`;
      const args = [token, leaseTtlMs, wantStale ? '1' : '', full, tagTtl, ...(bad ? [bad] : [])];
      const call = runScript(redis, READ_OR_LEASE, keys, args) as Promise<Buffer[]>;
      let reply: Buffer[];
      try {
        reply = await command(call, 'read_or_lease');
      } catch (err) {
        // Timed out, the script may still run later and take the lease for a caller that has moved
        // on: give it back then, rather than make other callers wait out leaseTtlMs.
        call.then((late) => (late[0]?.toString() === 'lease' ? release(lease, token) : undefined)).catch(() => undefined);
        report(err, 'read');
        return await uncached();
      }
      const status = reply[0]!.toString();
      if (status === 'hit') {
        const value = decode(full, reply[1]!);
        if (value !== UNDECODABLE) return hit<T>(full, value, tags, epoch);
        // Someone wrote other bytes that do not decode either: ask again to delete those.
        bad = reply[1]!;
        if (++badReads >= MAX_BAD_READS) return await uncached();
        continue;
      }
      if (status === 'lease') {
        stats.leases++;
        try {
          return await loadAndFill(full, token, keys, loader, ttl, negativeTtl, tagTtl, tags, clusterTags, epoch);
        } finally {
          // The lease is given up (filled, refused, released, or left to expire): this process's
          // waiters look again now instead of at their next poll.
          waiters.wake(full);
        }
      }
      // Another caller is filling.
      if (reply[1] !== undefined) {
        const value = decode(full, reply[1]);
        if (value !== UNDECODABLE) {
          stats.staleServed++;
          return value as T;
        }
        wantStale = false; // the holder's fill replaces it; wait for that instead
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        // Never a second fill: the holder's fill (or its expiry) decides what Redis keeps.
        return await uncached();
      }
      stats.waits++;
      await waiters.sleep(full, Math.min(pollMs, remaining));
      pollMs = nextPollMs(pollMs, settings.minWaitMs, settings.waitMs);
    }
  }

  function hit<T>(full: string, value: unknown, tags: readonly string[], epoch: number): T {
    stats.hits++;
    if (l1 && l1Usable()) l1.set(full, value, tags, epoch);
    return value as T;
  }

  async function loadAndFill<T>(
    full: string,
    token: string,
    keys: string[],
    loader: () => Promise<T>,
    ttl: number,
    negativeTtl: number | undefined,
    tagTtl: string,
    tags: readonly string[],
    clusterTags: readonly string[],
    epoch: number,
  ): Promise<T> {
    let value: T;
    try {
      value = await loader();
    } catch (err) {
      await release(keys[1]!, token);
      throw err;
    }
    const notFound = value === undefined;
    if (notFound && !(negativeTtl !== undefined && negativeTtl > 0)) {
      await release(keys[1]!, token);
      return value;
    }
    const payload = fillPayload(full, value, serializer);
    if (payload instanceof UncacheableValueError) {
      // Not representable: the caller still gets it, nothing is stored, and nobody waits on the lease.
      report(payload, 'fill');
      await release(keys[1]!, token);
      return value;
    }
    let written: number;
    try {
      const valueTtlMs = ttlMsOf(notFound ? negativeTtl! : ttl);
      const staleArg = staleTtlMs > 0 && !notFound ? staleTtlMs : '';
      // A fill that times out here may still run on the server later. It is as safe then as now:
      // it writes only while this caller's lease holds its token, the worker deletes the lease with
      // every invalidation of the key, and the lease expires leaseTtlMs after it was taken (by the
      // server's clock, also across a SIGSTOP). So a late fill either lands before the invalidation
      // of any later change (which then deletes it) or is refused.
      // On a cluster the tag sets are registered (their TTLs lengthened) first: an invalidation of a
      // tag in between deletes the lease, and the fill is refused.
      if (clusterTags.length > 0) await registerTagSets(full, clusterTags, tagTtl);
      written = Number(await command(runScript(redis, FILL, keys, [token, payload, valueTtlMs, staleArg, full, tagTtl]), 'fill'));
    } catch (err) {
      report(err, 'fill');
      return value;
    }
    if (written === 1) {
      stats.fills++;
      if (l1 && l1Usable()) l1.set(full, value, tags, epoch);
    } else {
      stats.fillsRefused++;
    }
    return value;
  }

  return {
    get,
    fullKey,
    async waitForCommit(lsn, waitOptions) {
      const target = commitLsn(lsn);
      const timeoutMs = commitTimeoutMs(waitOptions);
      const key = appliedKey(keyPrefix);
      const reached = await waitForApplied({ read: () => redis.get(key), key, operationTimeoutMs, report }, target, timeoutMs);
      // The worker's notification of the same commit may still be on its way to this process's
      // subscriber: empty the L1 so the reads that follow go to Redis, which has the deletions.
      if (reached) l1?.clear();
      return reached;
    },
    async invalidate(key) {
      const full = fullKey(key);
      l1?.delete(full);
      const lease = leaseOf(full);
      await command(lease === null ? redis.del(full) : redis.del(full, lease), 'DEL');
      waiters.wake(full);
    },
    get stats() {
      return stats;
    },
    get l1Active() {
      return l1Usable();
    },
    async close() {
      await subscription?.close();
    },
  };
}
