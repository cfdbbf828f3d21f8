import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { L1Cache } from './l1.js';
import { DEFAULT_LEASE_PREFIX, DEFAULT_STALE_PREFIX, leaseKey, staleKey } from './leases.js';
import { FILL, READ_OR_LEASE, RELEASE, runScript } from './scripts.js';
import { jsonSerializer, type Serializer } from './serializer.js';
import { tagKey } from './tags.js';

export interface CacheOptions {
  /** The worker's `redis.keyPrefix`: prepended to every key and to the tag set names. Default ''. */
  keyPrefix?: string;
  /** Prefix of lease keys; must match the worker's. Default `cdc-lease:`. */
  leasePrefix?: string;
  /** How long a lease lives when its holder never fills (a crashed process). Default 5000. */
  leaseTtlMs?: number;
  /** TTL of cached values. Default 300. */
  ttlSeconds?: number;
  /** Each TTL is shortened by a random fraction up to this, so keys filled together do not expire together. Default 0.1. */
  ttlJitter?: number;
  /** Cache "not found" (the loader returned undefined) for this long; not cached when unset. */
  negativeTtlSeconds?: number;
  /** Default: JSON. */
  serializer?: Serializer;
  /** Callers that find another caller filling: poll every `waitMs`, for at most `maxWaitMs`, then load without filling. */
  stampede?: { waitMs?: number; maxWaitMs?: number };
  /**
   * Keep a copy of every filled value under `cdc-stale:K` for `ttlSeconds` (longer than the value's
   * TTL) and serve it, instead of waiting, to callers that miss while another caller fills. The worker
   * does not delete these copies: a caller served one may see a value up to `ttlSeconds` old.
   */
  keepStale?: { ttlSeconds: number; prefix?: string };
  /**
   * An in-process cache in front of Redis, kept in step with the worker's `redis.notifyChannel`
   * through a subscriber connection (a duplicate of the client unless one is given). It is used only
   * while subscribed and emptied whenever the subscription (re)starts, since notifications published
   * meanwhile are lost. An entry lives at most `ttlMs` (default 1000), which bounds its staleness when
   * a notification is lost some other way; at most `maxEntries` (default 10,000) are kept.
   */
  l1?: { channel: string; ttlMs?: number; maxEntries?: number; subscriber?: Redis };
  /** Redis failures the cache hid from the caller (the value still came from the loader). */
  onError?: (err: Error, during: 'read' | 'fill' | 'release' | 'subscribe' | 'notification') => void;
}

export interface GetOptions {
  /** TTL of this value; default the cache's. */
  ttlSeconds?: number;
  /** Tags this value depends on: the key is registered under each, atomically with taking the lease and with the fill. */
  tags?: readonly string[];
  /** Overrides the cache's negativeTtlSeconds for this key (0: do not cache "not found"). */
  negativeTtlSeconds?: number;
}

export interface CacheStats {
  /** Served from Redis. */
  hits: number;
  /** Served from the in-process cache. */
  l1Hits: number;
  /** Misses that took the lease and ran the loader. */
  leases: number;
  /** Values written by their lease holder. */
  fills: number;
  /** Fills refused because the lease was gone: the key was invalidated while the loader ran. */
  fillsRefused: number;
  /** Polls while another caller held the lease. */
  waits: number;
  /** Callers served the stale copy while another caller filled. */
  staleServed: number;
  /** Loader runs that filled nothing: waited out maxWaitMs, or Redis failed. */
  uncachedLoads: number;
  /** Redis errors hidden from callers. */
  errors: number;
}

export interface Cache {
  /**
   * The value of `key` (without the key prefix): from L1, from Redis, or from `loader`, which runs
   * at most once at a time per key across every process sharing the Redis (while leases hold).
   * Whatever Redis does, a caller that runs the loader gets the loader's value; loader errors are
   * thrown as they are.
   */
  get<T>(key: string, loader: () => Promise<T>, options?: GetOptions): Promise<T>;
  /** Deletes the key and its lease (a fill in flight is refused) and drops it from this process's L1. */
  invalidate(key: string): Promise<void>;
  /** The key's full Redis name. */
  fullKey(key: string): string;
  readonly stats: Readonly<CacheStats>;
  /** Whether the L1 is in use (configured and subscribed). */
  readonly l1Active: boolean;
  /** Stops the L1 subscription (closes the subscriber connection if the cache created it). */
  close(): Promise<void>;
}

/**
 * The value stored for a cached "not found". It starts with a NUL byte, which neither JSON nor any
 * sensible text format produces.
 */
export const NOT_FOUND_MARKER = Buffer.from('\u0000cdc-invalidator:not-found');

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function positive(name: string, value: number | undefined, fallback: number, integer = false): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    throw new RangeError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(value)}`);
  }
  return v;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export function createCache(redis: Redis, options: CacheOptions = {}): Cache {
  if (redis.options.keyPrefix) {
    throw new TypeError(
      'createCache: the ioredis client has a keyPrefix option; pass the prefix as the cache\'s keyPrefix instead (lease keys must not get it)',
    );
  }
  const keyPrefix = options.keyPrefix ?? '';
  const leasePrefix = options.leasePrefix ?? DEFAULT_LEASE_PREFIX;
  const leaseTtlMs = Math.round(positive('leaseTtlMs', options.leaseTtlMs, 5000));
  const ttlSeconds = positive('ttlSeconds', options.ttlSeconds, 300);
  const jitter = options.ttlJitter ?? 0.1;
  if (!(jitter >= 0 && jitter < 1)) throw new RangeError(`ttlJitter must be in [0, 1), got ${String(jitter)}`);
  const negativeTtlSeconds = options.negativeTtlSeconds;
  const serializer = options.serializer ?? jsonSerializer;
  const waitMs = positive('stampede.waitMs', options.stampede?.waitMs, 25);
  const maxWaitMs = options.stampede?.maxWaitMs ?? 1000;
  if (!(maxWaitMs >= 0)) throw new RangeError(`stampede.maxWaitMs must be >= 0, got ${String(maxWaitMs)}`);
  const staleTtlMs = options.keepStale ? Math.round(positive('keepStale.ttlSeconds', options.keepStale.ttlSeconds, 0) * 1000) : 0;
  const stalePrefix = options.keepStale?.prefix ?? DEFAULT_STALE_PREFIX;
  const onError = options.onError ?? (() => undefined);
  const leaseSeconds = Math.ceil(leaseTtlMs / 1000);

  const stats: CacheStats = { hits: 0, l1Hits: 0, leases: 0, fills: 0, fillsRefused: 0, waits: 0, staleServed: 0, uncachedLoads: 0, errors: 0 };
  const report = (err: unknown, during: Parameters<NonNullable<CacheOptions['onError']>>[1]) => {
    stats.errors++;
    try {
      onError(toError(err), during);
    } catch {
      // a throwing error hook must not break the caller
    }
  };

  // Lease tokens: unique across processes (random) and within one (counter).
  const tokenBase = randomBytes(9).toString('base64url');
  let tokenCount = 0;

  // L1 and its subscription.
  const l1 = options.l1 ? new L1Cache(options.l1.maxEntries ?? 10_000, options.l1.ttlMs ?? 1000) : undefined;
  let l1Active = false;
  let subscriber: Redis | undefined;
  let ownSubscriber = false;
  let closed = false;
  if (options.l1 && l1) {
    const channel = options.l1.channel;
    ownSubscriber = options.l1.subscriber === undefined;
    const sub = (subscriber = options.l1.subscriber ?? redis.duplicate({ autoResubscribe: false, lazyConnect: true }));
    const subscribe = () => {
      sub.subscribe(channel).then(
        () => {
          // Whatever was published while we were not listening is lost: start empty.
          l1.clear();
          l1Active = !closed;
        },
        (err: unknown) => report(err, 'subscribe'),
      );
    };
    const deactivate = () => {
      l1Active = false;
      l1.clear();
    };
    sub.on('ready', subscribe);
    sub.on('close', deactivate);
    sub.on('end', deactivate);
    sub.on('error', (err: unknown) => report(err, 'subscribe'));
    sub.on('message', (ch: string, message: string) => {
      if (ch !== channel) return;
      try {
        const parsed = JSON.parse(message) as { keys?: unknown; tags?: unknown; patterns?: unknown };
        const list = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []);
        l1.invalidate(list(parsed.keys), list(parsed.tags), list(parsed.patterns));
      } catch (err) {
        // A message we cannot read may have named any key.
        l1.clear();
        report(err, 'notification');
      }
    });
    if (sub.status === 'wait') sub.connect().catch((err: unknown) => report(err, 'subscribe'));
    else if (sub.status === 'ready') subscribe();
  }

  const fullKey = (key: string) => keyPrefix + key;

  const ttlMsOf = (seconds: number) => Math.max(1, Math.round(seconds * 1000 * (1 - jitter * Math.random())));

  const decode = (data: Buffer): unknown => (data.equals(NOT_FOUND_MARKER) ? undefined : serializer.deserialize(data));

  async function release(lease: string, token: string): Promise<void> {
    try {
      await runScript(redis, RELEASE, [lease], [token]);
    } catch (err) {
      report(err, 'release'); // it expires on its own
    }
  }

  async function get<T>(key: string, loader: () => Promise<T>, getOptions: GetOptions = {}): Promise<T> {
    const full = fullKey(key);
    if (l1 && l1Active) {
      const cached = l1.get(full);
      if (cached.found) {
        stats.l1Hits++;
        return cached.value as T;
      }
    }
    const epoch = l1?.epoch ?? 0;
    const tags = getOptions.tags ? [...new Set(getOptions.tags)] : [];
    const tagSets = tags.map((tag) => tagKey(tag, keyPrefix));
    const ttl = getOptions.ttlSeconds ?? ttlSeconds;
    const negativeTtl = getOptions.negativeTtlSeconds ?? negativeTtlSeconds;
    const tagTtl = String(Math.ceil(Math.max(ttl, negativeTtl ?? 0)) + leaseSeconds);
    const lease = leaseKey(full, leasePrefix);
    const stale = staleKey(full, stalePrefix);
    const keys = [full, lease, stale, ...tagSets];
    // Hits, the common case, take a plain GET: a script call costs more on both ends. A miss then
    // asks read_or_lease, which reads again (a fill may have landed in between) or takes the lease.
    let first: Buffer | null;
    try {
      first = await redis.getBuffer(full);
    } catch (err) {
      report(err, 'read');
      stats.uncachedLoads++;
      return await loader();
    }
    if (first !== null) return hit<T>(full, first, tags, epoch);
    const deadline = Date.now() + maxWaitMs;

    for (;;) {
      const token = `${tokenBase}.${++tokenCount}`;
      let reply: Buffer[];
      try {
        reply = (await runScript(redis, READ_OR_LEASE, keys, [token, leaseTtlMs, staleTtlMs > 0 ? '1' : '', full, tagTtl])) as Buffer[];
      } catch (err) {
        report(err, 'read');
        stats.uncachedLoads++;
        return await loader();
      }
      const status = reply[0]!.toString();
      if (status === 'hit') return hit<T>(full, reply[1]!, tags, epoch);
      if (status === 'lease') {
        stats.leases++;
        return await loadAndFill(full, token, keys, loader, ttl, negativeTtl, tagTtl, tags, epoch);
      }
      // Another caller is filling.
      if (reply[1] !== undefined) {
        stats.staleServed++;
        return decode(reply[1]) as T;
      }
      if (Date.now() + waitMs > deadline) {
        // Never a second fill: the holder's fill (or its expiry) decides what Redis keeps.
        stats.uncachedLoads++;
        return await loader();
      }
      stats.waits++;
      await sleep(waitMs);
    }
  }

  function hit<T>(full: string, data: Buffer, tags: readonly string[], epoch: number): T {
    stats.hits++;
    const value = decode(data) as T;
    if (l1 && l1Active) l1.set(full, value, tags, epoch);
    return value;
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
    let payload: string | Buffer;
    try {
      payload = notFound ? NOT_FOUND_MARKER : serializer.serialize(value);
    } catch (err) {
      // A value the serializer cannot store: the caller still gets it, and nobody waits on the lease.
      report(err, 'fill');
      await release(keys[1]!, token);
      return value;
    }
    let written: number;
    try {
      const valueTtlMs = ttlMsOf(notFound ? negativeTtl! : ttl);
      written = Number(
        await runScript(redis, FILL, keys, [token, payload, valueTtlMs, staleTtlMs > 0 && !notFound ? staleTtlMs : '', full, tagTtl]),
      );
    } catch (err) {
      report(err, 'fill');
      return value;
    }
    if (written === 1) {
      stats.fills++;
      if (l1 && l1Active) l1.set(full, value, tags, epoch);
    } else {
      stats.fillsRefused++;
    }
    return value;
  }

  return {
    get,
    fullKey,
    async invalidate(key) {
      const full = fullKey(key);
      l1?.delete(full);
      await redis.del(full, leaseKey(full, leasePrefix));
    },
    get stats() {
      return stats;
    },
    get l1Active() {
      return l1Active;
    },
    async close() {
      closed = true;
      l1Active = false;
      l1?.clear();
      if (subscriber === undefined) return;
      if (ownSubscriber) subscriber.disconnect();
      else await subscriber.unsubscribe(options.l1!.channel).catch(() => undefined);
    },
  };
}
