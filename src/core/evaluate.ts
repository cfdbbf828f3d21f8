import type { Change, DeadLetter, Evaluation, KeyOperation, Row, SkipReason, Value } from './change.js';
import type { CompiledActions, CompiledRule, RuleSet } from './rules.js';
import { renderTemplate } from './template.js';

/**
 * The heart of the worker: this change plus these rules gives these key operations. Pure: no I/O,
 * no clock. What it cannot compute it does not guess; it reports the fallback it used or the dead
 * letter it produced instead.
 */
export function evaluate(change: Change, rules: RuleSet, out: Evaluation = emptyEvaluation()): Evaluation {
  // Two lookups by the strings the change already holds: no `schema.table` string per change.
  const forTable = rules.bySchema.get(change.schema)?.get(change.table);
  if (forTable === undefined) return out;
  for (const rule of forTable) {
    if (!rule.on.has(change.op)) continue;
    if (change.op === 'truncate') {
      skip(change, rule, 'truncate', 'TRUNCATE has no rows to render keys from', out);
      continue;
    }
    if (change.op === 'update' && rule.changed !== null && !anyChanged(change, rule.changed)) continue;

    const missing = renderActions(rule.actions, rowsOf(change), change.version, out.operations);
    if (missing !== null) {
      const row = change.op === 'insert' || (change.op === 'update' && missing.inNewRow) ? 'new' : 'old';
      skip(
        change,
        rule,
        'unknown_value',
        `"${missing.template}" needs column "${missing.column}", whose value is unknown in the ${row} row`,
        out,
      );
    }
  }
  return out;
}

export function emptyEvaluation(): Evaluation {
  return { operations: [], fallbacks: [], deadLetters: [] };
}

function rowsOf(change: Change): Array<{ row: Row; isNew: boolean }> {
  const rows: Array<{ row: Row; isNew: boolean }> = [];
  if (change.before !== null) rows.push({ row: change.before, isNew: false });
  if (change.after !== null) rows.push({ row: change.after, isNew: true });
  return rows;
}

interface Missing {
  template: string;
  column: string;
  inNewRow: boolean;
}

/**
 * Renders every template against every row, appending the keys. An update renders against the old
 * and the new row, and both keys go when they differ. Returns the first template that could not be
 * rendered, if any; the others are still rendered, since invalidating more is always safe.
 */
function renderActions(
  actions: CompiledActions,
  rows: Array<{ row: Row; isNew: boolean }>,
  version: bigint | null,
  ops: KeyOperation[],
): Missing | null {
  let missing: Missing | null = null;
  for (const action of ACTIONS) {
    for (const template of actions[action]) {
      let previous: string | null = null;
      for (const { row, isNew } of rows) {
        const r = renderTemplate(template, row);
        if (r.kind === 'key') {
          if (r.key !== previous) {
            ops.push(action === 'invalidate' ? { action: 'delete', key: r.key } : { action: 'bump', key: r.key, version });
          }
          previous = r.key;
        } else if (r.kind === 'unknown' && missing === null) {
          missing = { template: template.source, column: r.column, inNewRow: isNew };
        }
      }
    }
  }
  return missing;
}

const ACTIONS = ['invalidate', 'bump'] as const;

/**
 * `when.changed`: an update counts when one of the columns differs. A column whose old or new
 * value is unknown may have changed, so it counts too: skipping it could lose an invalidation.
 */
function anyChanged(change: Change, columns: readonly string[]): boolean {
  const before = change.before;
  const after = change.after;
  if (before === null || after === null) return true;
  for (const column of columns) {
    const a = valueOf(before, column);
    const b = valueOf(after, column);
    if (a === undefined || b === undefined || a !== b) return true;
  }
  return false;
}

function valueOf(row: Row, column: string): Value | undefined {
  return Object.hasOwn(row, column) ? row[column] : undefined;
}

function skip(change: Change, rule: CompiledRule, reason: SkipReason, detail: string, out: Evaluation): void {
  if (rule.fallback !== null) {
    renderActions(rule.fallback, [{ row: {}, isNew: false }], change.version, out.operations);
    out.fallbacks.push({
      schema: change.schema,
      table: change.table,
      op: change.op,
      reason,
      rule: rule.id,
      detail,
    });
    return;
  }
  out.deadLetters.push(deadLetter(change, reason, `${rule.id}: ${detail}`));
}

/** Dead letters carry the replica identity columns (to find the row) and never other values. */
export function deadLetter(change: Change, reason: SkipReason, detail: string): DeadLetter {
  const row = change.before ?? change.after;
  let key: Record<string, Value> | null = null;
  if (row !== null && change.keyColumns.length > 0) {
    key = {};
    for (const column of change.keyColumns) {
      const value = valueOf(row, column);
      if (value === undefined) {
        key = null;
        break;
      }
      key[column] = value;
    }
  }
  return {
    schema: change.schema,
    table: change.table,
    op: change.op,
    position: change.position,
    reason,
    detail,
    key,
  };
}
