import type { KeyOperation } from './change.js';
import { fallbackOperations } from './evaluate.js';
import type { RuleSet } from './rules.js';

/**
 * What to do when the source lost changes it can never replay (a replication slot whose WAL was
 * removed): what a TRUNCATE of every mapped table does, i.e. every rule's fallback. It is sound
 * only when every rule has one; the rules without are returned so the caller can refuse.
 */
export function lostChangesOperations(
  rules: RuleSet,
  version: bigint | null,
): { operations: KeyOperation[]; rulesWithoutFallback: string[] } {
  const operations: KeyOperation[] = [];
  const rulesWithoutFallback: string[] = [];
  for (const list of rules.byTable.values()) {
    for (const rule of list) {
      if (rule.fallback === null) rulesWithoutFallback.push(rule.id);
      else fallbackOperations(rule, version, operations);
    }
  }
  return { operations, rulesWithoutFallback };
}
