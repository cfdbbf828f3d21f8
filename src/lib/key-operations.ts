import type { KeyOperation } from '../core/change.js';

/** The deletes and version bumps of a batch, with the key prefix applied and duplicates removed. */
export interface KeyPlan {
  deletes: string[];
  /** Version keys and the decimal value each is moved to (the greatest asked for in the batch). */
  bumpTo: [key: string, version: string][];
  /** Version keys of sources without a position: incremented. */
  increments: string[];
}

/** Plans a batch's deletes and bumps; tags and patterns go to `other`, which each cache handles its way. */
export function planKeyOperations(
  operations: readonly KeyOperation[],
  keyPrefix: string,
  other: (op: Extract<KeyOperation, { action: 'tag' | 'pattern' }>) => void,
): KeyPlan {
  const deletes = new Set<string>();
  const bumpTo = new Map<string, bigint>();
  const increments = new Set<string>();
  for (const op of operations) {
    if (op.action === 'delete') {
      deletes.add(keyPrefix + op.key);
    } else if (op.action === 'bump') {
      const key = keyPrefix + op.key;
      if (op.version === null) {
        increments.add(key);
      } else {
        const current = bumpTo.get(key);
        if (current === undefined || op.version > current) bumpTo.set(key, op.version);
      }
    } else {
      other(op);
    }
  }
  return { deletes: [...deletes], bumpTo: [...bumpTo].map(([key, version]) => [key, version.toString()]), increments: [...increments] };
}
