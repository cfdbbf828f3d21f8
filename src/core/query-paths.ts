// The lookup a derived rule walks the join path with: from a changed row, hop by hop over the query's
// equalities, to the table its key's parameters belong to.
import type { LookupSpec, QueryRuleSpec } from './rule-spec.js';
import { qualifiedName, quoteIdent, type ColumnTerm, type Occurrence } from './query-tree.js';
import type { UnionFind } from './union-find.js';

/**
 * The lookup from a row of `from` along `path` (from's neighbour first, the parameters' table last):
 * each hop joined by the query's equalities, each table's own conditions kept, the row's columns as
 * $1..$n, the missing parameters read from the last table.
 */
export function pathLookup(
  from: Occurrence,
  path: readonly Occurrence[],
  missing: readonly number[],
  own: ReadonlyMap<number, string>,
  paramNames: readonly string[],
  bound: ReadonlyMap<number, ColumnTerm[]>,
  classes: UnionFind,
  columnTerms: ReadonlyMap<string, ColumnTerm>,
  spec: QueryRuleSpec,
): LookupSpec {
  const params: string[] = [];
  const param = (column: string) => {
    let i = params.indexOf(column);
    if (i < 0) {
      params.push(column);
      i = params.length - 1;
    }
    return `$${i + 1}`;
  };
  const ref = (o: Occurrence, column: string) => `${quoteIdent(o.alias)}.${quoteIdent(column)}`;
  const conditions: string[] = [];
  const hops = [from, ...path];
  for (let i = 0; i + 1 < hops.length; i++) {
    const a = hops[i]!;
    const b = hops[i + 1]!;
    for (const [left, right] of equalPairs(a, b, classes, columnTerms)) {
      conditions.push(a === from ? `${ref(b, right)} = ${param(left)}` : `${ref(a, left)} = ${ref(b, right)}`);
    }
  }
  for (const o of path) conditions.push(...o.filters);
  // A parameter the changed row holds must hold the same value on the parameters' table.
  const anchor = path[path.length - 1]!;
  for (const [n, column] of own) {
    const there = bound.get(n)!.find((t) => t.occurrence === anchor);
    if (there !== undefined) conditions.push(`${ref(anchor, there.column)} = ${param(column)}`);
  }
  const selected = missing.map((n) => {
    const term = bound.get(n)!.find((t) => t.occurrence === anchor)!;
    return `${ref(anchor, term.column)} AS ${quoteIdent(paramNames[n - 1]!)}`;
  });
  const from_ = path.map((o) => `${qualifiedName(o.schema, o.table)} AS ${quoteIdent(o.alias)}`);
  const sql = `SELECT DISTINCT ${selected.join(', ')} FROM ${from_.join(', ')}${conditions.length > 0 ? ` WHERE ${conditions.join(' AND ')}` : ''}`;
  return { sql, params, timeoutMs: spec.lookupTimeoutMs ?? 5_000, retries: spec.lookupRetries ?? 3 };
}

/** Column pairs (a's, b's) that the query makes equal. */
export function equalPairs(a: Occurrence, b: Occurrence, classes: UnionFind, columnTerms: ReadonlyMap<string, ColumnTerm>): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const members of classes.groups()) {
    const terms = members.flatMap((m) => (columnTerms.has(m) ? [columnTerms.get(m)!] : []));
    const left = terms.find((t) => t.occurrence === a);
    const right = terms.find((t) => t.occurrence === b);
    if (left !== undefined && right !== undefined) pairs.push([left.column, right.column]);
  }
  return pairs;
}

export function shortestPath(from: Occurrence, targets: readonly Occurrence[], adjacency: ReadonlyMap<Occurrence, ReadonlySet<Occurrence>>): Occurrence[] {
  const previous = new Map<Occurrence, Occurrence | null>([[from, null]]);
  const queue = [from];
  while (queue.length > 0) {
    const current = queue.shift()!;
    if (current !== from && targets.includes(current)) {
      const path: Occurrence[] = [];
      for (let at: Occurrence | null = current; at !== null && at !== from; at = previous.get(at) ?? null) path.unshift(at);
      return path;
    }
    for (const next of adjacency.get(current) ?? []) {
      if (!previous.has(next)) {
        previous.set(next, current);
        queue.push(next);
      }
    }
  }
  throw new Error('no path to the parameters\' table (the tables were checked to be connected)');
}

export function bfs(start: Occurrence, adjacency: ReadonlyMap<Occurrence, ReadonlySet<Occurrence>>): Set<Occurrence> {
  const seen = new Set([start]);
  const queue = [start];
  while (queue.length > 0) {
    for (const next of adjacency.get(queue.shift()!) ?? []) {
      if (!seen.has(next)) {
        seen.add(next);
        queue.push(next);
      }
    }
  }
  return seen;
}
