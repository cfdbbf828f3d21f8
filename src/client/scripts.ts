import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';

/**
 * Adds ARGV[member] to the tag sets KEYS[from..] and lengthens their TTL to ARGV[ttl] seconds, as
 * registerTags does: a TTL is only ever lengthened, and a set without one keeps none.
 */
const REGISTER_TAGS = `
local function register(from, member, ttl)
  for i = from, #KEYS do
    local current = redis.call('TTL', KEYS[i])
    redis.call('SADD', KEYS[i], member)
    if current == -2 or (current >= 0 and current < ttl) then
      redis.call('EXPIRE', KEYS[i], ttl)
    end
  end
end`;

/**
 * register_tag. KEYS: one tag set. ARGV: the member, the set's TTL (s). On a cluster, where the tag
 * sets of a key are in other slots than the key, each set is registered by a call of its own.
 */
export const REGISTER_TAG = `${REGISTER_TAGS}
register(1, ARGV[1], tonumber(ARGV[2]))
return 1`;

/**
 * read_or_lease. KEYS: the cache key, its lease, its stale copy, then tag sets.
 * ARGV: lease token, lease TTL (ms), '1' to return the stale copy when waiting, the member (the cache
 * key's full name), the tag sets' TTL (s), and optionally bytes the caller could not decode.
 * Replies {'hit', value}, {'lease'} (the caller holds the lease with its token), or {'wait'} /
 * {'wait', stale value} (another caller holds it). Taking the lease also registers the key under its
 * tags, so an invalidation of a tag while the caller loads finds the key in the set and deletes its
 * lease: the fill that follows is then refused. A value equal to the undecodable bytes is deleted
 * first, so it counts as a miss; a different value (someone filled meanwhile) is a hit as usual.
 */
export const READ_OR_LEASE = `${REGISTER_TAGS}
local value = redis.call('GET', KEYS[1])
if value and ARGV[6] ~= nil and value == ARGV[6] then
  redis.call('DEL', KEYS[1])
  value = false
end
if value then return {'hit', value} end
if redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then
  register(4, ARGV[4], tonumber(ARGV[5]))
  return {'lease'}
end
if ARGV[3] == '1' then
  local stale = redis.call('GET', KEYS[3])
  if stale then return {'wait', stale} end
end
return {'wait'}`;

/**
 * fill. KEYS: the cache key, its lease, its stale copy, then tag sets.
 * ARGV: lease token, value, TTL (ms), stale copy TTL (ms, '' for none), member, tag sets' TTL (s).
 * Writes only while the caller still holds the lease: the worker deletes the lease with the key, so
 * a value loaded before a change is never written after its invalidation. Tags go first: a command
 * that fails there (a tag name holding a non-set) stops the script before the value is written.
 * Returns 1 when written.
 */
export const FILL = `${REGISTER_TAGS}
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
register(4, ARGV[5], tonumber(ARGV[6]))
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[4] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[4]) end
redis.call('DEL', KEYS[2])
return 1`;

/** release. KEYS: a lease. ARGV: the token. Deletes the lease if the caller still holds it. */
export const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

const shas = new Map<string, string>();
function sha1(script: string): string {
  let sha = shas.get(script);
  if (sha === undefined) shas.set(script, (sha = createHash('sha1').update(script).digest('hex')));
  return sha;
}

/**
 * EVALSHA with replies as Buffers (values may be binary); on NOSCRIPT (first use on this server, or
 * after a restart or SCRIPT FLUSH: nothing ran) EVAL, which also caches the script.
 */
export async function runScript(redis: Redis | Cluster, script: string, keys: readonly string[], args: readonly (string | Buffer | number)[]): Promise<unknown> {
  const rest = [keys.length, ...keys, ...args];
  try {
    return await redis.callBuffer('EVALSHA', [sha1(script), ...rest]);
  } catch (err) {
    if (!(err instanceof Error && err.message.includes('NOSCRIPT'))) throw err;
    return await redis.callBuffer('EVAL', [script, ...rest]);
  }
}
