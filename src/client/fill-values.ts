// What the Redis and the memcached caches share: their counters and error reports, and how a cached
// value is read back and a loaded one written.
import { CacheDecodeError, UncacheableValueError } from './errors.js';
import type { CacheErrorPhase, CacheStats } from './options.js';
import type { Serializer } from './serializer.js';

/**
 * The value stored for a cached "not found". It starts with a NUL byte, which neither JSON nor any
 * sensible text format produces.
 */
export const NOT_FOUND_MARKER = Buffer.from('\u0000cdc-invalidator:not-found');

/** What `decode` returns for bytes the serializer rejects. */
export const UNDECODABLE = Symbol('undecodable');

/** Reads of a value that does not decode before the caller gives up on the cache for this call. */
export const MAX_BAD_READS = 3;

export function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export type Report = (err: unknown, during: CacheErrorPhase) => void;

/** Fresh counters, and the report that counts an error and hands it to the caller's hook. */
export function statsAndReport(onError: ((err: Error, during: CacheErrorPhase) => void) | undefined): { stats: CacheStats; report: Report } {
  const stats: CacheStats = { hits: 0, l1Hits: 0, leases: 0, fills: 0, fillsRefused: 0, waits: 0, staleServed: 0, uncachedLoads: 0, errors: 0 };
  const report: Report = (err, during) => {
    stats.errors++;
    try {
      onError?.(toError(err), during);
    } catch {
      // a throwing error hook must not break the caller
    }
  };
  return { stats, report };
}

/** Cached bytes back to a value: undefined for a cached "not found", UNDECODABLE (reported) for bytes the serializer rejects. */
export function decoder(serializer: Serializer, report: Report): (full: string, data: Buffer) => unknown {
  return (full, data) => {
    if (data.equals(NOT_FOUND_MARKER)) return undefined;
    try {
      return serializer.deserialize(data);
    } catch (err) {
      report(new CacheDecodeError(full, err), 'decode');
      return UNDECODABLE;
    }
  };
}

/**
 * The bytes to store for a loaded value (the "not found" marker for undefined), or why it cannot be
 * stored: the serializer threw, or gave something that is not a string or Buffer (JSON of a function,
 * or of an object whose toJSON() returns undefined). The caller still gets the value then.
 */
export function fillPayload(full: string, value: unknown, serializer: Serializer): string | Buffer | UncacheableValueError {
  let payload: unknown;
  try {
    payload = value === undefined ? NOT_FOUND_MARKER : serializer.serialize(value);
  } catch (err) {
    return new UncacheableValueError(full, `the serializer threw: ${toError(err).message}`, err);
  }
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) return payload;
  return new UncacheableValueError(full, `the serializer returned ${payload === null ? 'null' : typeof payload}, not a string or Buffer`);
}
