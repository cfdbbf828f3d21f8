import { sameSlotName } from '../../lib/cluster-slot.js';
import type { RedisPlan } from './plan.js';

/** One command of a batch, with the key Redis Cluster routes it by. */
export interface ClusterCommand {
  /** Routing key: every key of the command is in this key's slot. */
  key: string | Buffer;
  name: string;
  args: (string | Buffer)[];
}

/**
 * Bumps a version key to ARGV[1] when that is greater than what it holds (decimal strings of any
 * length, compared by length then digits), keeping its TTL. One key: safe in any cluster slot.
 */
export const CLUSTER_BUMP_SCRIPT = `
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if (not cur) or #cur < #new or (#cur == #new and cur < new) then
  redis.call('SET', KEYS[1], new, 'KEEPTTL')
end
return 1`;

/**
 * The lease of a full key name on a cluster: it must be in the key's slot, because the client's
 * fill script reads the lease and writes the key in one call. `<leasePrefix><key>` when that hashes
 * like the key (the key has a hash tag), else `<leasePrefix>{<key>}`; null for the rare key that
 * neither fits (a '}' and no hash tag). lib/cluster-slot.ts has the rule.
 */
export function clusterLeaseKey(leasePrefix: string, key: string): string | null {
  return sameSlotName(leasePrefix, key);
}

/**
 * A batch's deletes (each with its lease, in one command when they share a slot), version bumps
 * and increments as single-slot commands, in that order: deletes before bumps, as on a single
 * server. Nothing spans slots, so nothing needs MULTI or a script over several keys.
 */
export function keyCommands(plan: RedisPlan, deleteCommand: 'del' | 'unlink', leasePrefix: string | null, bumpSha: string): ClusterCommand[] {
  const commands = deleteCommands(plan.deletes, deleteCommand, leasePrefix);
  for (const [key, version] of plan.bumpTo) commands.push({ key, name: 'EVALSHA', args: [bumpSha, '1', key, version] });
  for (const key of plan.increments) commands.push({ key, name: 'INCR', args: [key] });
  return commands;
}

/** Deletes of keys (as text, or as the bytes a tag set or SCAN returned), each with its lease. */
export function deleteCommands(keys: readonly (string | Buffer)[], deleteCommand: 'del' | 'unlink', leasePrefix: string | null): ClusterCommand[] {
  const name = deleteCommand === 'unlink' ? 'UNLINK' : 'DEL';
  const commands: ClusterCommand[] = [];
  for (const key of keys) {
    if (leasePrefix === null) {
      commands.push({ key, name, args: [key] });
      continue;
    }
    const lease = typeof key === 'string' ? sameSlotName(leasePrefix, key) : sameSlotName(leasePrefix, key);
    if (lease !== null) {
      commands.push({ key, name, args: [key, lease] });
    } else {
      // A key that no lease name can share a slot with: its lease (which the client cannot take
      // on a cluster either) is deleted on its own.
      const separate = typeof key === 'string' ? leasePrefix + key : Buffer.concat([Buffer.from(leasePrefix), key]);
      commands.push({ key, name, args: [key] });
      commands.push({ key: separate, name, args: [separate] });
    }
  }
  return commands;
}

/** Replies that mean "not here, not now": the command did nothing and can be sent again. */
export function isRedirection(err: Error): boolean {
  return /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN|NOSCRIPT)\b/.test(err.message);
}
