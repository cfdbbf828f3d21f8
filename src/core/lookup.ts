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

export function lookupRequestId(lookup: CompiledLookup, params: readonly Value[]): string {
  return `${lookup.sql}\u0000${JSON.stringify(params)}`;
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
      for (const row of [change.before, change.after]) {
        if (row === null) continue;
        const p = lookupParams(lookup, row);
        if (!('params' in p)) continue;
        const id = lookupRequestId(lookup, p.params);
        if (!into.has(id)) {
          into.set(id, { id, sql: lookup.sql, params: p.params, timeoutMs: lookup.timeoutMs, retries: lookup.retries });
        }
      }
    }
  }
}
