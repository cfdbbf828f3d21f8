import type { Redis } from 'ioredis';
import { DEFAULT_LEASE_PREFIX, DEFAULT_STALE_PREFIX } from '../lib/cache-keys.js';
import { jsonSerializer, type Serializer } from './serializer.js';

/** What the cache was doing when Redis or the stored data let it down. */
export type CacheErrorPhase = 'read' | 'decode' | 'fill' | 'release' | 'subscribe' | 'notification' | 'commit';

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
  /**
   * Callers that find another caller filling poll Redis, first after `minWaitMs` (default 1), each
   * interval `minWaitMs` longer than the one before, up to `waitMs` (default 25); after `maxWaitMs`
   * (default 1000) they load without filling. Waiters in the filler's own process are woken by its fill.
   */
  stampede?: { minWaitMs?: number; waitMs?: number; maxWaitMs?: number };
  /**
   * The longest the cache waits for any one Redis command (default 250 ms), whatever the ioredis
   * client's own options: past it, `get` treats Redis as failed and returns the loader's value.
   */
  operationTimeoutMs?: number;
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
  /**
   * Trouble the cache hid from the caller (the value still came from the loader): Redis errors and
   * timeouts, cached bytes that do not decode, values the serializer cannot represent.
   */
  onError?: (err: Error, during: CacheErrorPhase) => void;
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
  /** Trouble hidden from callers (each one also reported to onError). */
  errors: number;
}

/** The options, checked, with their defaults. */
export interface CacheSettings {
  keyPrefix: string;
  leasePrefix: string;
  leaseTtlMs: number;
  leaseSeconds: number;
  ttlSeconds: number;
  jitter: number;
  negativeTtlSeconds: number | undefined;
  serializer: Serializer;
  minWaitMs: number;
  waitMs: number;
  maxWaitMs: number;
  operationTimeoutMs: number;
  staleTtlMs: number;
  stalePrefix: string;
}

function positive(name: string, value: unknown, fallback: number): number {
  const v = value ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new RangeError(`${name} must be a positive finite number, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return v;
}

export function cacheSettings(options: CacheOptions): CacheSettings {
  const leaseTtlMs = Math.round(positive('leaseTtlMs', options.leaseTtlMs, 5000));
  const jitter = options.ttlJitter ?? 0.1;
  if (!(jitter >= 0 && jitter < 1)) throw new RangeError(`ttlJitter must be in [0, 1), got ${String(jitter)}`);
  const waitMs = positive('stampede.waitMs', options.stampede?.waitMs, 25);
  const minWaitMs = positive('stampede.minWaitMs', options.stampede?.minWaitMs, Math.min(1, waitMs));
  if (minWaitMs > waitMs) throw new RangeError(`stampede.minWaitMs (${minWaitMs}) must not exceed stampede.waitMs (${waitMs})`);
  const maxWaitMs = options.stampede?.maxWaitMs ?? 1000;
  if (!(typeof maxWaitMs === 'number' && maxWaitMs >= 0)) throw new RangeError(`stampede.maxWaitMs must be >= 0, got ${String(maxWaitMs)}`);
  return {
    keyPrefix: options.keyPrefix ?? '',
    leasePrefix: options.leasePrefix ?? DEFAULT_LEASE_PREFIX,
    leaseTtlMs,
    leaseSeconds: Math.ceil(leaseTtlMs / 1000),
    ttlSeconds: positive('ttlSeconds', options.ttlSeconds, 300),
    jitter,
    negativeTtlSeconds: options.negativeTtlSeconds,
    serializer: options.serializer ?? jsonSerializer,
    minWaitMs,
    waitMs,
    maxWaitMs,
    operationTimeoutMs: positive('operationTimeoutMs', options.operationTimeoutMs, 250),
    staleTtlMs: options.keepStale ? Math.round(positive('keepStale.ttlSeconds', options.keepStale.ttlSeconds, 0) * 1000) : 0,
    stalePrefix: options.keepStale?.prefix ?? DEFAULT_STALE_PREFIX,
  };
}
