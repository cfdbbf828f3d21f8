import { tagKey } from '../../lib/cache-keys.js';
import type { KeyOperation } from '../../core/change.js';
import { escapeGlob } from '../../core/glob.js';
import { planKeyOperations, type KeyPlan } from '../../lib/key-operations.js';

/** What one batch asks of Redis, with the key prefix applied and duplicates removed. */
export interface RedisPlan extends KeyPlan {
  /** Tags as named by the rules, and the Redis set holding each one's members. */
  tags: { tag: string; setKey: string }[];
  /** SCAN MATCH patterns, prefix included (escaped: a prefix is a literal, not a glob). */
  patterns: string[];
}

export function planBatch(operations: readonly KeyOperation[], keyPrefix: string): RedisPlan {
  const tags = new Set<string>();
  const patterns = new Set<string>();
  const matchPrefix = escapeGlob(keyPrefix);
  const plan = planKeyOperations(operations, keyPrefix, (op) => {
    if (op.action === 'tag') tags.add(op.tag);
    else patterns.add(matchPrefix + op.pattern);
  });
  return {
    ...plan,
    tags: [...tags].map((tag) => ({ tag, setKey: tagKey(tag, keyPrefix) })),
    patterns: [...patterns],
  };
}
