import { InvalidatorError } from '../errors.js';

/**
 * Errors the cache reports to `onError`. `get` never throws them: the cache's trouble is hidden from
 * the caller, who gets the loader's value. `invalidate` throws `CacheTimeoutError`, since a caller
 * who asked for a deletion must know it may not have happened.
 */

/** Redis did not answer a command within `operationTimeoutMs`. The command may still run later. */
export class CacheTimeoutError extends InvalidatorError {
  constructor(
    readonly command: string,
    readonly timeoutMs: number,
  ) {
    super('CACHE_TIMEOUT', `redis did not answer ${command} within ${timeoutMs} ms (operationTimeoutMs)`, { retryable: true });
  }
}

/** Cached bytes the serializer cannot decode (written by other code or an older serializer): a miss. */
export class CacheDecodeError extends InvalidatorError {
  constructor(
    readonly key: string,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    super('CACHE_DECODE', `the cached value of ${key} does not decode (${reason}); treated as a miss`, { cause });
  }
}

/** A loaded value the serializer cannot represent (it threw, or returned neither a string nor a Buffer). */
export class UncacheableValueError extends InvalidatorError {
  constructor(
    readonly key: string,
    detail: string,
    cause?: unknown,
  ) {
    super('CACHE_UNCACHEABLE', `the value of ${key} cannot be cached: ${detail}; returned without caching`, { cause });
  }
}
