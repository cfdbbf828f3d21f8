// The cache-aside client on memcached: the same `Cache` as on Redis, with memcached's own leases.
//
// A miss is read with `mg <key> v c N<lease>`: memcached creates an empty placeholder and answers `W`
// (won: this caller fills) to exactly one caller, `Z` to the others (a fill is under way). The winner
// loads and writes with `ms C<cas>`, the CAS it read with the placeholder. The worker's invalidation
// (`md`, or `md I`, which marks the item stale and changes its CAS) makes that write fail: a fill
// that read the database before a change cannot land after the change's invalidation. After `md I`
// the next reader gets the stale value with `W` and refills it; the others get it with `Z` and, with
// `keepStale`, are served it meanwhile. No lease keys and no scripts: the CAS is the fence.
import { appliedKey } from '../lib/cache-keys.js';
import { KetamaRing } from '../lib/memcached/ketama.js';
import { MetaConnection, replyFlag, storableKey, type MetaCommand, type MetaReply } from '../lib/memcached/meta-connection.js';
import { splitServer } from '../lib/memcached/servers.js';
import type { Cache } from './cache.js';
import { commitLsn, commitTimeoutMs, waitForApplied } from './commit.js';
import { CacheTimeoutError, UncacheableValueError } from './errors.js';
import { decoder, fillPayload, MAX_BAD_READS, statsAndReport, UNDECODABLE } from './fill-values.js';
import { cacheSettings, type CacheOptions, type GetOptions } from './options.js';
import { FillWaiters, nextPollMs } from './waiters.js';

export interface MemcachedCacheOptions extends Omit<CacheOptions, 'l1' | 'leasePrefix' | 'keepStale'> {
  /**
   * Serve the stale value of an item the worker marked stale (its `invalidation: mark-stale`) to
   * callers that miss while another refills it, instead of waiting. Without it they wait.
   */
  keepStale?: boolean;
}


/**
 * A cache on memcached servers, listed as the worker's `memcached.servers` lists them (keys are placed
 * by libketama hashing over these names). Tags (`get(..., { tags })`) and the L1 need Redis.
 */
export function createMemcachedCache(servers: readonly string[], options: MemcachedCacheOptions = {}): Cache {
  if (servers.length === 0) throw new TypeError('createMemcachedCache: give at least one server (host:port)');
  for (const key of ['l1', 'leasePrefix'] as const) {
    if ((options as Record<string, unknown>)[key] !== undefined) throw new TypeError(`createMemcachedCache: ${key} needs Redis`);
  }
  const { keepStale, ...rest } = options;
  const settings = cacheSettings(rest);
  const { keyPrefix, serializer, operationTimeoutMs } = settings;
  const leaseSeconds = Math.max(1, Math.ceil(settings.leaseTtlMs / 1000));
  const ring = new KetamaRing(servers);
  const connections = servers.map((server) => new MetaConnection({ ...splitServer(server), timeoutMs: operationTimeoutMs }));
  const waiters = new FillWaiters();

  const { stats, report } = statsAndReport(options.onError);
  const decode = decoder(serializer, report);
  const fullKey = (key: string) => keyPrefix + key;
  const connectionFor = (full: string) => connections[ring.indexFor(full)]!;
  const ttlSecondsOf = (seconds: number) => Math.max(1, Math.round(seconds * (1 - settings.jitter * Math.random())));

  async function one(full: string, command: MetaCommand, name: string): Promise<MetaReply> {
    try {
      const [reply] = await connectionFor(full).request([command]);
      if (reply!.error !== undefined) throw new Error(`memcached answered ${reply!.error} to ${name}`);
      return reply!;
    } catch (err) {
      // The connection gives up after operationTimeoutMs, as Redis commands do.
      if (err instanceof Error && /did not answer within/.test(err.message)) throw new CacheTimeoutError(name, operationTimeoutMs);
      throw err;
    }
  }

  /** Gives the win back: deletes the placeholder (or the stale item) unless someone changed it since. */
  async function release(full: string, cas: string): Promise<void> {
    try {
      await one(full, { verb: 'md', key: full, flags: [`C${cas}`] }, 'md');
    } catch (err) {
      report(err, 'release'); // the placeholder expires on its own
    }
  }

  async function get<T>(key: string, loader: () => Promise<T>, getOptions: GetOptions = {}): Promise<T> {
    if (getOptions.tags !== undefined && getOptions.tags.length > 0) throw new TypeError('memcached has no sets: tags need Redis');
    const full = fullKey(key);
    const uncached = async () => {
      stats.uncachedLoads++;
      return await loader();
    };
    if (!storableKey(full)) {
      report(new UncacheableValueError(full, 'memcached keys are at most 250 bytes'), 'read');
      return await uncached();
    }
    const ttl = getOptions.ttlSeconds ?? settings.ttlSeconds;
    const negativeTtl = getOptions.negativeTtlSeconds ?? settings.negativeTtlSeconds;
    const deadline = Date.now() + settings.maxWaitMs;
    let pollMs = settings.minWaitMs;
    let badReads = 0;
    for (;;) {
      let reply: MetaReply;
      try {
        reply = await one(full, { verb: 'mg', key: full, flags: ['v', 'c', `N${leaseSeconds}`] }, 'mg');
      } catch (err) {
        report(err, 'read');
        return await uncached();
      }
      if (reply.code !== 'VA') {
        report(new Error(`memcached answered ${reply.code} to mg`), 'read');
        return await uncached();
      }
      const won = reply.flags.includes('W');
      const filling = reply.flags.includes('Z');
      const stale = reply.flags.includes('X');
      const cas = replyFlag(reply, 'c');
      if (won && cas !== undefined) {
        stats.leases++;
        try {
          return await loadAndFill(full, cas, loader, ttl, negativeTtl);
        } finally {
          waiters.wake(full);
        }
      }
      if (!won && !filling && !stale) {
        const value = decode(full, reply.value ?? Buffer.alloc(0));
        if (value !== UNDECODABLE) {
          stats.hits++;
          return value as T;
        }
        // Bytes that do not decode: delete them (unless they changed since) and read again.
        if (++badReads >= MAX_BAD_READS || cas === undefined) return await uncached();
        await release(full, cas);
        continue;
      }
      // Another caller is filling: the stale value meanwhile, when asked for and there is one.
      if (stale && keepStale === true && reply.value !== undefined && reply.value.length > 0) {
        const value = decode(full, reply.value);
        if (value !== UNDECODABLE) {
          stats.staleServed++;
          return value as T;
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) return await uncached();
      stats.waits++;
      await waiters.sleep(full, Math.min(pollMs, remaining));
      pollMs = nextPollMs(pollMs, settings.minWaitMs, settings.waitMs);
    }
  }

  async function loadAndFill<T>(full: string, cas: string, loader: () => Promise<T>, ttl: number, negativeTtl: number | undefined): Promise<T> {
    let value: T;
    try {
      value = await loader();
    } catch (err) {
      await release(full, cas);
      throw err;
    }
    const notFound = value === undefined;
    if (notFound && !(negativeTtl !== undefined && negativeTtl > 0)) {
      await release(full, cas);
      return value;
    }
    const payload = fillPayload(full, value, serializer);
    if (payload instanceof UncacheableValueError) {
      report(payload, 'fill');
      await release(full, cas);
      return value;
    }
    const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
    try {
      // Fenced by the CAS of the placeholder: an invalidation since (md, or md I) makes it fail. A
      // write that times out here and lands later is as safe: its CAS is just as old.
      const written = await one(full, { verb: 'ms', key: full, flags: [`C${cas}`, `T${ttlSecondsOf(notFound ? negativeTtl! : ttl)}`], value: data }, 'ms');
      if (written.code === 'HD') stats.fills++;
      else if (written.code === 'EX' || written.code === 'NF') stats.fillsRefused++;
      else report(new Error(`memcached answered ${written.code} to ms`), 'fill');
    } catch (err) {
      report(err, 'fill');
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
      const read = async () => {
        const reply = await one(key, { verb: 'mg', key, flags: ['v'] }, 'mg');
        return reply.code === 'VA' ? reply.value!.toString('utf8') : null;
      };
      return await waitForApplied({ read, key, operationTimeoutMs, report }, target, timeoutMs);
    },
    async invalidate(key) {
      const full = fullKey(key);
      if (!storableKey(full)) return;
      const reply = await one(full, { verb: 'md', key: full }, 'md');
      if (reply.code !== 'HD' && reply.code !== 'NF') throw new Error(`memcached answered ${reply.code} to md`);
      waiters.wake(full);
    },
    get stats() {
      return stats;
    },
    get l1Active() {
      return false;
    },
    async close() {
      for (const connection of connections) connection.close();
    },
  };
}
