import { tagKey } from '../../lib/cache-keys.js';
import type { KeyOperation } from '../../core/change.js';
import { escapeGlob } from '../../core/glob.js';

/** What one batch asks of Redis, with the key prefix applied and duplicates removed. */
export interface RedisPlan {
  deletes: string[];
  /** Version keys and the decimal value each is moved to (the greatest asked for in the batch). */
  bumpTo: [key: string, version: string][];
  /** Version keys of sources without a position: INCR. */
  increments: string[];
  /** Tags as named by the rules, and the Redis set holding each one's members. */
  tags: { tag: string; setKey: string }[];
  /** SCAN MATCH patterns, prefix included (escaped: a prefix is a literal, not a glob). */
  patterns: string[];
}

export function planBatch(operations: readonly KeyOperation[], keyPrefix: string): RedisPlan {
  const deletes = new Set<string>();
  const bumpTo = new Map<string, bigint>();
  const increments = new Set<string>();
  const tags = new Set<string>();
  const patterns = new Set<string>();
  const matchPrefix = escapeGlob(keyPrefix);
  for (const op of operations) {
    switch (op.action) {
      case 'delete':
        deletes.add(keyPrefix + op.key);
        break;
      case 'bump': {
        const key = keyPrefix + op.key;
        if (op.version === null) {
          increments.add(key);
        } else {
          const current = bumpTo.get(key);
          if (current === undefined || op.version > current) bumpTo.set(key, op.version);
        }
        break;
      }
      case 'tag':
        tags.add(op.tag);
        break;
      case 'pattern':
        patterns.add(matchPrefix + op.pattern);
        break;
    }
  }
  return {
    deletes: [...deletes],
    bumpTo: [...bumpTo].map(([key, version]) => [key, version.toString()]),
    increments: [...increments],
    tags: [...tags].map((tag) => ({ tag, setKey: tagKey(tag, keyPrefix) })),
    patterns: [...patterns],
  };
}
