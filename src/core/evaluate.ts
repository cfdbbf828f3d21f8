import type { Change, DeadLetter, Evaluation, KeyOperation, Row, SkipReason, Value } from './change.js';
import { escapeGlob } from './glob.js';
import { lookupParams, lookupRowId, NO_LOOKUP_RESULTS, planLookups, sameValues, type LookupRequest, type LookupResults } from './lookup.js';
import { ACTION_KINDS, type CompiledActions, type CompiledRule, type RuleSet } from './rules.js';
import { renderTemplate, renderWithLookups, type LookupRowsFor, type Template } from './template.js';

/**
 * The heart of the worker: this change plus these rules gives these key operations. Pure: no I/O,
 * no clock. What it cannot compute it does not guess; it reports the fallback it used or the dead
 * letter it produced instead.
 */
export function evaluate(
  change: Change,
  rules: RuleSet,
  out: Evaluation = emptyEvaluation(),
  lookups: LookupResults = NO_LOOKUP_RESULTS,
): Evaluation {
  const forTable = rulesOf(rules, change);
  if (forTable === undefined) return out;
  for (const rule of forTable) {
    if (change.op === 'truncate') {
      if (rule.on.has('truncate')) skip(change, rule, 'truncate', 'TRUNCATE has no rows to render keys from', out);
      continue;
    }
    if (!applies(rule, change)) continue;
    const missing = renderActions(rule, rule.actions, rowsOf(change), change.version, lookups, out.operations);
    if (missing !== null) {
      const row = change.op === 'insert' || (change.op === 'update' && missing.inNewRow) ? 'new' : 'old';
      const detail =
        missing.kind === 'unknown'
          ? `"${missing.template}" needs column "${missing.column}", whose value is unknown in the ${row} row`
          : `"${missing.template}": lookup "${missing.alias}" for the ${row} row failed: ${missing.message}`;
      skip(change, rule, missing.kind === 'unknown' ? 'unknown_value' : 'lookup_failed', detail, out);
    }
  }
  return out;
}

/** The lookups a change will need: run them, then pass their results to evaluate(). */
export function lookupsFor(change: Change, rules: RuleSet, into: Map<string, LookupRequest>): void {
  if (change.op === 'truncate') return;
  planLookups(change, rulesOf(rules, change), applies, into);
}

function rulesOf(rules: RuleSet, change: Change): readonly CompiledRule[] | undefined {
  // Two lookups by the strings the change already holds: no `schema.table` string per change.
  return rules.bySchema.get(change.schema)?.get(change.table);
}

/** Whether a rule reacts to a (row) change: its operations, and `when.changed` for updates. */
function applies(rule: CompiledRule, change: Change): boolean {
  if (!rule.on.has(change.op)) return false;
  return change.op !== 'update' || rule.changed === null || anyChanged(change, rule.changed);
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

type Missing =
  | { kind: 'unknown'; template: string; column: string; inNewRow: boolean }
  | { kind: 'failed'; template: string; alias: string; message: string; inNewRow: boolean };

/**
 * Renders every template against every row, appending the operations. An update renders against
 * the old and the new row, and both keys go when they differ. Returns the first template that
 * could not be rendered, if any; the others are still rendered, since invalidating more is
 * always safe.
 */
function renderActions(
  rule: CompiledRule,
  actions: CompiledActions,
  rows: Array<{ row: Row; isNew: boolean }>,
  version: bigint | null,
  lookups: LookupResults,
  ops: KeyOperation[],
): Missing | null {
  let missing: Missing | null = null;
  for (const kind of ACTION_KINDS) {
    const escape = kind === 'patterns' ? escapeGlob : undefined;
    for (const template of actions[kind]) {
      // An update's old and new rows often render the same keys: each goes once.
      let previous: string | null = null;
      let previousKeys: string[] | null = null;
      for (const { row, isNew } of rows) {
        if (template.lookups.length === 0) {
          // The common case, kept free of allocations beyond the key itself.
          const r = renderTemplate(template, row, escape);
          if (r.kind === 'key') {
            if (r.key !== previous) ops.push(operation(kind, r.key, version));
            previous = r.key;
          } else if (r.kind === 'unknown' && missing === null) {
            missing = { kind: 'unknown', template: template.source, column: r.column, inNewRow: isNew };
          }
          continue;
        }
        // The new row agreeing with the old on all the template reads renders the old row's keys again.
        if (previousKeys !== null && sameInputs(rule, template, rows[0]!.row, row)) continue;
        const r = renderWithLookups(template, row, (alias) => lookupRows(rule, alias, row, lookups), escape);
        if (r.kind === 'keys') {
          if (previousKeys === null || !sameKeys(previousKeys, r.keys)) for (const key of r.keys) ops.push(operation(kind, key, version));
          previousKeys = r.keys;
        } else if (missing === null) {
          missing =
            r.kind === 'unknown'
              ? { kind: 'unknown', template: template.source, column: r.column, inNewRow: isNew }
              : { kind: 'failed', template: template.source, alias: r.alias, message: r.message, inNewRow: isNew };
        }
      }
    }
  }
  return missing;
}

/** Whether two rows give a lookup template the same values: its own columns, and its lookups' parameters. */
function sameInputs(rule: CompiledRule, template: Template, a: Row, b: Row): boolean {
  if (!sameValues(template.columns, a, b)) return false;
  for (const alias of template.lookups) if (!sameValues(rule.lookups.get(alias)!.params, a, b)) return false;
  return true;
}

function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function operation(kind: (typeof ACTION_KINDS)[number], text: string, version: bigint | null): KeyOperation {
  switch (kind) {
    case 'invalidate':
      return { action: 'delete', key: text };
    case 'bump':
      return { action: 'bump', key: text, version };
    case 'tags':
      return { action: 'tag', tag: text };
    case 'patterns':
      return { action: 'pattern', pattern: text };
  }
}

function lookupRows(rule: CompiledRule, alias: string, row: Row, lookups: LookupResults): LookupRowsFor {
  const lookup = rule.lookups.get(alias)!;
  const id = lookupRowId(lookup, row);
  if (id === undefined) {
    const p = lookupParams(lookup, row);
    return { kind: 'unknown', column: 'unknown' in p ? p.unknown : '' };
  }
  const result = lookups.get(id);
  if (result === undefined) return { kind: 'failed', message: 'the lookup was not run' };
  return result.ok ? { kind: 'rows', rows: result.rows } : { kind: 'failed', message: result.message };
}

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

/** A rule's fallback actions: fixed names, so they render without a row. */
export function fallbackOperations(rule: CompiledRule, version: bigint | null, ops: KeyOperation[]): void {
  if (rule.fallback === null) return;
  renderActions(rule, rule.fallback, [{ row: {}, isNew: false }], version, NO_LOOKUP_RESULTS, ops);
}

function skip(change: Change, rule: CompiledRule, reason: SkipReason, detail: string, out: Evaluation): void {
  if (rule.fallback !== null) {
    fallbackOperations(rule, change.version, out.operations);
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
