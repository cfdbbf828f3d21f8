import type { Redis } from 'ioredis';
import { SinkUnavailableError, toError } from '../../errors.js';

/** Keys per DEL/UNLINK inside a script: Lua's unpack() has a limit (about 8,000). */
export const KEYS_PER_CALL = 500;
/** Fields of one dead letter in the stream (names and values). */
export const DEAD_LETTER_FIELDS = 12;

/**
 * Lua shared by the scripts below.
 *
 * bump_to: sets a version key to its new value when that is greater than the stored one. Versions
 * are decimal strings of any length (an LSN can pass 2^53, where Lua numbers lose precision), so
 * they compare by length first, then by digits. KEEPTTL leaves any TTL the application set.
 *
 * store_position: stores the applied position (a PostgreSQL LSN as text, `X/Y` in hex) unless the
 * stored one is already at or past it: a batch applied again after a retry never moves it back.
 * The two halves are compared as numbers (each fits in 32 bits), never as strings ("A/0" < "10/0").
 */
const LUA_FUNCTIONS = `
local function bump_to(key, new)
  local cur = redis.call('GET', key)
  if (not cur) or #cur < #new or (#cur == #new and cur < new) then
    redis.call('SET', key, new, 'KEEPTTL')
  end
end
local function parse_lsn(text)
  local hi, lo = string.match(text, '^(%x+)/(%x+)$')
  if not hi then return nil end
  return tonumber(hi, 16), tonumber(lo, 16)
end
local function store_position(key, text)
  local hi, lo = parse_lsn(text)
  if not hi then return redis.error_reply('not an LSN: ' .. text) end
  local cur = redis.call('GET', key)
  if cur then
    local chi, clo = parse_lsn(cur)
    if chi and (chi > hi or (chi == hi and clo >= lo)) then return 0 end
  end
  redis.call('SET', key, text)
  return 1
end`;

/** store_position(KEYS[1], ARGV[1]). */
export const APPLIED_POSITION_SCRIPT = `${LUA_FUNCTIONS}
return store_position(KEYS[1], ARGV[1])`;

/**
 * A batch's deletes, bumps, increments, applied position and dead letters in one atomic call:
 * Redis runs a script to the end before serving anyone else, as it does a MULTI/EXEC, at the
 * cost of one command instead of one per key group.
 *
 * KEYS: the keys to delete, the version keys to bump to a value, the version keys to INCR, then the
 * applied-position key (when ARGV[5] is 1) and the dead-letter stream (when ARGV[6] > 0).
 * ARGV: DEL or UNLINK, the three key counts, 1 or 0 for a position, the number of dead letters,
 * the stream's MAXLEN, one value per bumped key, the position (when there is one), then the fields
 * of each dead letter, DEAD_LETTER_FIELDS at a time.
 *
 * Like EXEC, every step runs even when one fails (a key of the wrong type, say); the first error is
 * returned afterwards, so the batch is retried, which changes nothing that already happened.
 */
export const APPLY_BATCH_SCRIPT = `${LUA_FUNCTIONS}
local command = ARGV[1]
local nd, nb, ni = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local has_position, nl, maxlen = ARGV[5] == '1', tonumber(ARGV[6]), ARGV[7]
local first_error = nil
local function step(ok, err)
  if not ok and first_error == nil then first_error = err end
end
local function try(f, ...)
  local ok, err = pcall(f, ...)
  step(ok, err)
end
local i = 1
while i <= nd do
  local j = math.min(i + ${KEYS_PER_CALL - 1}, nd)
  try(redis.call, command, unpack(KEYS, i, j))
  i = j + 1
end
for k = 1, nb do try(bump_to, KEYS[nd + k], ARGV[7 + k]) end
for k = 1, ni do try(redis.call, 'INCR', KEYS[nd + nb + k]) end
local next_key, next_arg = nd + nb + ni + 1, 8 + nb
if has_position then
  local ok, result = pcall(store_position, KEYS[next_key], ARGV[next_arg])
  if ok and type(result) == 'table' and result.err then step(false, result.err) else step(ok, result) end
  next_key, next_arg = next_key + 1, next_arg + 1
end
for l = 0, nl - 1 do
  local at = next_arg + l * ${DEAD_LETTER_FIELDS}
  try(redis.call, 'XADD', KEYS[next_key], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, at, at + ${DEAD_LETTER_FIELDS - 1}))
end
if first_error ~= nil then
  if type(first_error) == 'table' and first_error.err then return redis.error_reply(first_error.err) end
  return redis.error_reply(tostring(first_error))
end
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
