import { CacheTimeoutError } from './errors.js';

/**
 * `promise`, or a CacheTimeoutError after `timeoutMs`. The command itself is not cancelled: ioredis
 * keeps it queued and it may still run on the server later, so every caller must be safe against a
 * command that lands after it gave up (see the lease reasoning in cache.ts).
 */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, command: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CacheTimeoutError(command, timeoutMs)), timeoutMs);
  });
  // A rejection after the timeout has nobody left to hear it.
  promise.catch(() => undefined);
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
