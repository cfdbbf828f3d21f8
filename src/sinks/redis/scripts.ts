import type { Redis } from 'ioredis';
import { SinkUnavailableError, toError } from '../../errors.js';

/**
 * Sets each version key to its new value when that is greater than the stored one: versions are
 * decimal strings of any length (an LSN can pass 2^53, where Lua numbers lose precision), so they
 * compare by length first, then by digits. KEEPTTL leaves any TTL the application set.
 */
export const BUMP_TO_SCRIPT = `
for i, key in ipairs(KEYS) do
  local new = ARGV[i]
  local cur = redis.call('GET', key)
  if (not cur) or #cur < #new or (#cur == #new and cur < new) then
    redis.call('SET', key, new, 'KEEPTTL')
  end
end
return #KEYS`;

/**
 * Stores the applied position (a PostgreSQL LSN as text, `X/Y` in hex) in KEYS[1] unless the stored
 * one is already at or past it: a batch applied again after a retry never moves it back. The two
 * halves are compared as numbers (each fits in 32 bits), never as strings ("A/0" < "10/0").
 */
export const APPLIED_POSITION_SCRIPT = `
local function parse(text)
  local hi, lo = string.match(text, '^(%x+)/(%x+)$')
  if not hi then return nil end
  return tonumber(hi, 16), tonumber(lo, 16)
end
local hi, lo = parse(ARGV[1])
if not hi then return redis.error_reply('not an LSN: ' .. ARGV[1]) end
local cur = redis.call('GET', KEYS[1])
if cur then
  local chi, clo = parse(cur)
  if chi and (chi > hi or (chi == hi and clo >= lo)) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1`;

/**
 * One step of a tag invalidation: pops up to ARGV[1] members of the tag set KEYS[1] and deletes
 * them with ARGV[2] (DEL or UNLINK), in one atomic call. Popping and deleting together is the
 * point: a member is never gone from the set while its key survives, so a step cut short by a
 * crash or a lost connection loses nothing and the next run carries on with what is left. SPOP
 * removes the set itself with its last member. The members are key names the application wrote;
 * they are not declared as KEYS, which standalone Redis allows (Redis Cluster would not).
 * ARGV[3], when not empty, is the lease prefix: each member's lease goes with it.
 * Returns how many members were popped: fewer than asked means the set is gone.
 */
export const TAG_STEP_SCRIPT = `
local members = redis.call('SPOP', KEYS[1], ARGV[1])
if #members > 0 then
  redis.call(ARGV[2], unpack(members))
  if ARGV[3] ~= '' then
    local leases = {}
    for i, member in ipairs(members) do leases[i] = ARGV[3] .. member end
    redis.call(ARGV[2], unpack(leases))
  end
end
return #members`;

/**
 * Scripts run by SHA: SCRIPT LOAD once per connection, then EVALSHA. ioredis's own fallback
 * (EVAL on NOSCRIPT) would resend a script outside a MULTI and break the batch's all-or-nothing,
 * so loading is explicit. A new connection may reach a restarted Redis with an empty script cache:
 * the owner calls reset() when the connection becomes ready.
 */
export class ScriptCache {
  private readonly shas = new Map<string, string>();

  constructor(private readonly client: Redis) {}

  reset(): void {
    this.shas.clear();
  }

  /** The SHA of a script loaded on the current connection. */
  async sha(script: string): Promise<string> {
    const known = this.shas.get(script);
    if (known !== undefined) return known;
    try {
      const sha = (await this.client.script('LOAD', script)) as string;
      this.shas.set(script, sha);
      return sha;
    } catch (err) {
      throw new SinkUnavailableError(`redis script load failed: ${toError(err).message}`, err);
    }
  }

  /**
   * EVALSHA outside a MULTI. A NOSCRIPT reply (SCRIPT FLUSH, or a restart the client has not seen
   * yet) means nothing ran, so the script is loaded again and the call repeated once. Driver
   * errors are thrown as they are, for the caller to wrap.
   */
  async run(script: string, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    for (let attempt = 1; ; attempt++) {
      const sha = await this.sha(script);
      try {
        return await this.client.evalsha(sha, keys.length, ...keys, ...args);
      } catch (err) {
        if (attempt > 1 || !isNoScript(err)) throw err;
        this.reset();
      }
    }
  }
}

export function isNoScript(err: unknown): boolean {
  return toError(err).message.includes('NOSCRIPT');
}
