import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { tagKey } from '../lib/cache-keys.js';

/**
 * For applications filling the cache: record which tags a cached key belongs to, so that a rule's
 * `tags:` can find it. A tag is the Redis set `<keyPrefix>tag:<tag>`; its members are full Redis
 * key names, and the worker deletes them as they are (it does not prefix them again).
 */

export interface RegisterTagsOptions {
  /** The worker's `redis.keyPrefix`: prepended to the tag set names (not to `key`). */
  keyPrefix?: string;
  /**
   * Expire the tag sets after this many seconds, usually the cached value's TTL, so sets of keys
   * that expired on their own do not grow for ever. A TTL is only ever lengthened: a set that
   * already lives longer (or has no TTL) keeps it, so no registered key outlives its tag set.
   */
  ttlSeconds?: number;
}

export { tagKey };

/**
 * Adds KEYS to each tag set and, with a TTL, lengthens the sets' TTLs: one script, so either
 * every tag records the key or none does. (MULTI with EXPIRE NX and EXPIRE GT cannot tell a
 * set that was just created, which needs a TTL, from one that lives for ever on purpose.)
 * ARGV[1] is the member, ARGV[2] the TTL in seconds or an empty string.
 */
const REGISTER_SCRIPT = `
local ttl = tonumber(ARGV[2])
for _, set in ipairs(KEYS) do
  local current = redis.call('TTL', set)
  redis.call('SADD', set, ARGV[1])
  if ttl and (current == -2 or (current >= 0 and current < ttl)) then
    redis.call('EXPIRE', set, ttl)
  end
end
return #KEYS`;
const REGISTER_SHA = createHash('sha1').update(REGISTER_SCRIPT).digest('hex');

/**
 * Registers `key` (as passed to SET on the same client) under every tag. Call it after writing the
 * value: a change committed in between invalidates the tag, and the key, once registered, goes
 * with the next one. If the client uses ioredis's own `keyPrefix` option, ioredis prepends it to
 * the tag set names, and this function prepends it to the member too, since the member must be
 * the key's full name.
 */
export async function registerTags(redis: Redis | Cluster, key: string, tags: readonly string[], options: RegisterTagsOptions = {}): Promise<void> {
  if (tags.length === 0) return;
  const ttl = options.ttlSeconds;
  if (ttl !== undefined && !(Number.isInteger(ttl) && ttl > 0)) {
    throw new RangeError(`ttlSeconds must be a positive integer, got ${String(ttl)}`);
  }
  const sets = [...new Set(tags)].map((tag) => tagKey(tag, options.keyPrefix));
  const member = (redis.options.keyPrefix ?? '') + key;
  const ttlArg = ttl === undefined ? '' : String(ttl);
  // On a Redis Cluster the sets are in different slots: one call per set (each atomic on its own).
  const groups = redis.isCluster ? sets.map((set) => [set]) : [sets];
  await Promise.all(
    groups.map(async (group) => {
      const args = [...group, member, ttlArg];
      try {
        await redis.evalsha(REGISTER_SHA, group.length, ...args);
      } catch (err) {
        if (!(err instanceof Error && err.message.includes('NOSCRIPT'))) throw err;
        // First use on this server (or after a restart): EVAL also caches the script.
        await redis.eval(REGISTER_SCRIPT, group.length, ...args);
      }
    }),
  );
}
