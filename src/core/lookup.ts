import type { Change, Row, Value } from './change.js';
import type { CompiledLookup, CompiledRule } from './rules.js';

/** One query to run: a rule's lookup with the parameter values of one changed row. */
export interface LookupRequest {
  /** Identical lookups within a batch share this id and run once. */
  id: string;
  sql: string;
  params: Value[];
  timeoutMs: number;
  retries: number;
}

/** What a lookup gave: its rows (values in text form), or why it gave none. */
export type LookupResult = { ok: true; rows: readonly Row[] } | { ok: false; message: string };

export type LookupResults = ReadonlyMap<string, LookupResult>;

export const NO_LOOKUP_RESULTS: LookupResults = new Map();

/**
 * The parameters of a lookup for one row, or the first parameter column whose value is unknown.
 * A NULL parameter is passed as NULL: the query decides what it matches.
 */
export function lookupParams(lookup: CompiledLookup, row: Row): { params: Value[] } | { unknown: string } {
  const params: Value[] = [];
  for (const column of lookup.params) {
    const value = Object.hasOwn(row, column) ? row[column] : undefined;
    if (value === undefined) return { unknown: column };
    params.push(value);
  }
  return { params };
}

/**
 * Built for every changed row a lookup applies to, twice (to plan, then to render): kept short and
 * cheap. The lookup's key is digits; the separator after it tells the forms apart, so that no two
 * parameter lists share an id: one value as is (NULL marked apart from any text), else JSON.
 */
export function lookupRequestId(lookup: CompiledLookup, params: readonly Value[]): string {
  if (params.length === 1) {
    const value = params[0]!;
    return value === null ? `${lookup.key}\u0001` : `${lookup.key}\u0000${value}`;
  }
  return `${lookup.key}\u0002${JSON.stringify(params)}`;
}

/**
 * lookupRequestId(lookup, lookupParams(lookup, row)), without the lists in between for the usual
 * single parameter; undefined when a parameter's value is unknown (lookupParams says which).
 */
export function lookupRowId(lookup: CompiledLookup, row: Row): string | undefined {
  if (lookup.params.length === 1) {
    const column = lookup.params[0]!;
    const value = Object.hasOwn(row, column) ? row[column] : undefined;
    if (value === undefined) return undefined;
    return value === null ? `${lookup.key}\u0001` : `${lookup.key}\u0000${value}`;
  }
  const p = lookupParams(lookup, row);
  return 'params' in p ? lookupRequestId(lookup, p.params) : undefined;
}

/**
 * Collects the lookups a change needs: for each rule that applies, each lookup its templates
 * use, for the old and the new row (once when their parameters are equal).
 */
export function planLookups(
  change: Change,
  rules: ReadonlyArray<CompiledRule> | undefined,
  applies: (rule: CompiledRule, change: Change) => boolean,
  into: Map<string, LookupRequest>,
): void {
  if (rules === undefined) return;
  for (const rule of rules) {
    if (rule.lookups.size === 0 || !applies(rule, change)) continue;
    for (const lookup of rule.lookups.values()) {
      const { before, after } = change;
      if (before !== null) planLookup(lookup, before, into);
      // Most updates leave a lookup's parameters as they were: nothing more to plan.
      if (after !== null && (before === null || !sameValues(lookup.params, before, after))) planLookup(lookup, after, into);
    }
  }
}

function planLookup(lookup: CompiledLookup, row: Row, into: Map<string, LookupRequest>): void {
  const id = lookupRowId(lookup, row);
  if (id === undefined || into.has(id)) return;
  const p = lookupParams(lookup, row);
  if ('params' in p) into.set(id, { id, sql: lookup.sql, params: p.params, timeoutMs: lookup.timeoutMs, retries: lookup.retries });
}

/** Whether two rows hold the same known value in each of the columns. */
export function sameValues(columns: readonly string[], a: Row, b: Row): boolean {
  for (const column of columns) {
    const x = Object.hasOwn(a, column) ? a[column] : undefined;
    if (x === undefined || x !== (Object.hasOwn(b, column) ? b[column] : undefined)) return false;
  }
  return true;
}
