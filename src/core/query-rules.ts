// A `query` rule: the SQL the application caches and the key over its parameters. From the query's
// parse tree (PostgreSQL's own parser, handed in by the caller: core does no I/O) this derives one
// ordinary rule per table the query reads: which updates matter (when.changed), and how a changed row
// (old and new image) gives the parameter values whose results it can change: from its own columns, or
// through a lookup that walks the join path to the table the parameters bind to.
//
// Why a lookup walks only the path to that table, and why the parameters must all bind to one table:
// a lookup runs after the commit, against the database as it is then. Of the rows that made up a
// result, take the changed one nearest to the parameters' table: every row between them is unchanged,
// so its lookup finds the parameters the result had before (and its own image gives its old and new
// values). That holds for a path; with parameters on two tables a transaction can change rows on both
// branches, and no lookup after the commit can see the result as it was. Such queries are refused.
import { numberNamedPlaceholders } from '../lib/sql-lexer.js';
import { coarseHint, coarseRules } from './query-coarse.js';
import { checkParams, keyParameters, rewriteTemplate } from './query-params.js';
import { bfs, pathLookup, shortestPath } from './query-paths.js';
import {
  addFilter,
  asArray,
  asEquality,
  collectFrom,
  describe,
  HAND_WRITTEN,
  qualifiedName,
  references,
  Refused,
  resolver,
  splitAnd,
  type ColumnTerm,
  type DerivedRule,
  type Node,
  type Occurrence,
  type QueryInput,
} from './query-tree.js';
import type { LookupSpec, QueryRuleSpec, RuleSpec } from './rule-spec.js';

export type { QueryRuleSpec } from './rule-spec.js';
export type { DerivedRule } from './query-tree.js';
import { UnionFind } from './union-find.js';


/** What the parser gives for one SQL text: its parse tree (libpg_query's JSON), or throws. */
export type ParseSql = (sql: string) => unknown;

export interface QueryProblem {
  /** Path inside the rule, e.g. ['query'] or ['invalidate', 0]. */
  path: (string | number)[];
  message: string;
  /** A coarse rule stands in for a query whose shape is not supported: a warning. Default: error. */
  severity?: 'warning';
}


export interface DerivedRules {
  rules: DerivedRule[];
  problems: QueryProblem[];
}

/** The lookup a derived rule walks its join path with. */
export const QUERY_LOOKUP = 'query';


/**
 * Derives the per-table rules of one query rule. Problems say why a query is refused, and what to
 * write instead; with `coarse`, a query of an unsupported shape gets coarse rules and a warning.
 */
export function deriveQueryRules(spec: QueryRuleSpec, parse: ParseSql): DerivedRules {
  let input: QueryInput;
  try {
    input = readInput(spec, parse);
  } catch (err) {
    if (err instanceof Refused) return { rules: [], problems: [{ path: err.path, message: err.message }] };
    throw err;
  }
  try {
    return { rules: derive(spec, input), problems: [] };
  } catch (err) {
    if (!(err instanceof Refused)) throw err;
    if (spec.coarse === undefined || err.kind !== 'shape') {
      return { rules: [], problems: [{ path: err.path, message: `${err.message}${err.kind === 'shape' ? coarseHint(spec, input) : ''}` }] };
    }
    try {
      const coarse = coarseRules(spec, input);
      return { rules: coarse.rules, problems: [{ path: ['query'], message: `${err.message}. Covered coarsely: ${coarse.summary}`, severity: 'warning' }] };
    } catch (inner) {
      if (inner instanceof Refused) return { rules: [], problems: [{ path: inner.path, message: inner.message }] };
      throw inner;
    }
  }
}

/** The text of a query rule's SQL that is parsed: `:name` placeholders numbered. */
export function queryText(query: string): string {
  return numberNamedPlaceholders(query)?.sql ?? query;
}

/** The checks every query rule passes, supported shape or not: it parses, is one SELECT, its parameters and keys fit. */
function readInput(spec: QueryRuleSpec, parse: ParseSql): QueryInput {
  // `:name` placeholders, as ORMs write them, become $1..$n; their names are the parameters'.
  const numbered = numberNamedPlaceholders(spec.query);
  if (numbered !== null && spec.params !== undefined) {
    throw new Refused(`the query names its parameters (:${numbered.names.join(', :')}): leave "params" out`, ['params'], 'input');
  }
  let tree: unknown;
  try {
    tree = parse(numbered?.sql ?? spec.query);
  } catch (err) {
    throw new Refused(`the query does not parse: ${err instanceof Error ? err.message : String(err)}`, ['query'], 'input');
  }
  const stmts = (tree as { stmts?: Array<{ stmt?: Node }> }).stmts ?? [];
  if (stmts.length !== 1) throw new Refused(`the query must be one statement, found ${stmts.length}`, ['query'], 'input');
  const select = stmts[0]!.stmt?.['SelectStmt'] as Node | undefined;
  if (select === undefined) throw new Refused('the query must be a SELECT', ['query'], 'input');
  if (select['intoClause'] !== undefined) throw new Refused('SELECT INTO is not a cached read', ['query'], 'input');
  const paramNames = checkParams(numbered?.names ?? spec.params ?? [], select);
  const keyParams = keyParameters(spec, paramNames);
  return { tree, select, paramNames, keyParams };
}

function derive(spec: QueryRuleSpec, input: QueryInput): DerivedRule[] {
  const { select, paramNames, keyParams } = input;
  if (select['withClause'] !== undefined) throw new Refused(`WITH (common table expressions) is not supported: ${HAND_WRITTEN}`);
  if (select['op'] !== undefined && select['op'] !== 'SETOP_NONE') throw new Refused(`UNION, INTERSECT and EXCEPT are not supported: ${HAND_WRITTEN}`);
  if (select['valuesLists'] !== undefined) throw new Refused('the query must read tables (VALUES alone has nothing to invalidate)');

  const occurrences: Occurrence[] = [];
  const conditions: Node[] = [];
  for (const item of asArray(select['fromClause'])) collectFrom(item, occurrences, conditions);
  if (occurrences.length === 0) throw new Refused('the query reads no table');
  const where = select['whereClause'] as Node | undefined;
  if (where !== undefined) conditions.push(where);

  const resolve = resolver(occurrences);

  // Equalities between columns and parameters, as classes: `u.id = c.user_id AND u.id = $1` puts
  // u.id, c.user_id and $1 in one class.
  const classes = new UnionFind();
  const columnTerms = new Map<string, ColumnTerm>();
  const termKey = (t: ColumnTerm) => `${t.occurrence.alias}\u0000${t.column}`;
  const addColumn = (t: ColumnTerm) => {
    const key = termKey(t);
    columnTerms.set(key, t);
    classes.add(key);
    return key;
  };

  for (const conjunct of conditions.flatMap(splitAnd)) {
    const equality = asEquality(conjunct, resolve);
    if (equality !== undefined) {
      const [a, b] = equality;
      if (a.kind === 'column' && b.kind === 'column') {
        if (a.occurrence === b.occurrence) {
          addFilter(a.occurrence, conjunct, resolve);
        } else {
          classes.union(addColumn(a), addColumn(b));
        }
        continue;
      }
      const column = a.kind === 'column' ? a : b.kind === 'column' ? b : undefined;
      const param = a.kind === 'param' ? a : b.kind === 'param' ? b : undefined;
      if (column !== undefined && param !== undefined) {
        classes.union(addColumn(column), `$${param.number}`);
        continue;
      }
      if (column !== undefined) {
        addFilter(column.occurrence, conjunct, resolve);
        continue;
      }
    }
    const refs = references(conjunct, resolve);
    if (refs.sublink) throw new Refused(`subqueries are not supported (${describe(conjunct)}): ${HAND_WRITTEN}`);
    const keyParam = refs.params.find((n) => keyParams.has(n));
    if (keyParam !== undefined) {
      throw new Refused(
        `$${keyParam} (${paramNames[keyParam - 1]}) is in the key, so it must be compared by equality with a column ` +
          `(column = $${keyParam}), not in "${describe(conjunct)}": ${HAND_WRITTEN}`,
      );
    }
    const tables = new Set(refs.columns.map((c) => c.occurrence));
    if (tables.size > 1) {
      const names = [...tables].map((o) => o.alias).join(', ');
      throw new Refused(
        `a condition on several tables (${names}) other than an equality between two columns is not supported ` +
          `(${describe(conjunct)}: an OR across tables, or a join on something other than equality): ${HAND_WRITTEN}`,
      );
    }
    // A condition on one table, or on parameters outside the key: it can only narrow the results.
    if (tables.size === 1 && refs.params.length === 0) addFilter([...tables][0]!, conjunct, resolve);
  }

  // Every column the query reads, per table: an update touching none of them changes no result.
  // ORDER BY and GROUP BY may name an output column (`count(*) AS n ... ORDER BY n`): not a table's.
  const outputNames = new Set(asArray(select['targetList']).flatMap((t) => {
    const name = ((t as Node)['ResTarget'] as Node | undefined)?.['name'];
    return typeof name === 'string' ? [name] : [];
  }));
  for (const field of ['targetList', 'groupClause', 'sortClause', 'havingClause', 'distinctClause', 'windowClause'] as const) {
    const refs = references(select[field], resolve, field === 'sortClause' || field === 'groupClause' ? outputNames : undefined);
    if (refs.sublink) throw new Refused(`subqueries are not supported (in ${field}): ${HAND_WRITTEN}`);
  }
  for (const conjunct of conditions) references(conjunct, resolve);

  // Connected by equalities, or a change to one table would touch every result.
  const adjacency = new Map<Occurrence, Set<Occurrence>>(occurrences.map((o) => [o, new Set()]));
  for (const members of classes.groups()) {
    const terms = members.flatMap((m) => (columnTerms.has(m) ? [columnTerms.get(m)!] : []));
    for (const a of terms) for (const b of terms) if (a.occurrence !== b.occurrence) adjacency.get(a.occurrence)!.add(b.occurrence);
  }
  const reached = bfs(occurrences[0]!, adjacency);
  const apart = occurrences.filter((o) => !reached.has(o));
  if (apart.length > 0) {
    throw new Refused(
      `${apart.map((o) => o.alias).join(', ')} ${apart.length === 1 ? 'is' : 'are'} not joined to ${occurrences[0]!.alias} by an ` +
        'equality between columns: every result would depend on every row of it',
    );
  }

  // Where each parameter of the key can be read: the columns in its class, by table.
  const bound = new Map<number, ColumnTerm[]>();
  for (const n of keyParams) {
    const terms = classes.members(`$${n}`).flatMap((m) => (columnTerms.has(m) ? [columnTerms.get(m)!] : []));
    if (terms.length === 0) {
      throw new Refused(
        `$${n} (${paramNames[n - 1]}) is in the key but the query never compares it with a column by equality ` +
          `(column = $${n}), so no change can be mapped to its value: ${HAND_WRITTEN}`,
      );
    }
    bound.set(n, terms);
  }
  const anchors = occurrences.filter((o) => [...bound.values()].every((terms) => terms.some((t) => t.occurrence === o)));
  if (keyParams.size > 0 && anchors.length === 0) {
    const where = [...bound.entries()].map(([n, terms]) => `$${n} on ${[...new Set(terms.map((t) => t.occurrence.alias))].join('/')}`);
    throw new Refused(
      `the key's parameters bind to different tables (${where.join(', ')}): a transaction that changes rows on both ` +
        `sides cannot be mapped to its keys after the commit. Key the cached result by parameters of one table, or ${HAND_WRITTEN}`,
    );
  }

  return occurrences.map((occurrence) => deriveFor(occurrence, spec, paramNames, keyParams, bound, anchors, adjacency, classes, columnTerms));
}

function deriveFor(
  occurrence: Occurrence,
  spec: QueryRuleSpec,
  paramNames: readonly string[],
  keyParams: ReadonlySet<number>,
  bound: ReadonlyMap<number, ColumnTerm[]>,
  anchors: readonly Occurrence[],
  adjacency: ReadonlyMap<Occurrence, ReadonlySet<Occurrence>>,
  classes: UnionFind,
  columnTerms: ReadonlyMap<string, ColumnTerm>,
): DerivedRule {
  // What renders each parameter: a column of the changed row, or a column of the lookup's result.
  const render = new Map<string, string>();
  const own = new Map<number, string>();
  for (const n of keyParams) {
    const term = bound.get(n)!.find((t) => t.occurrence === occurrence);
    if (term !== undefined) own.set(n, term.column);
  }
  let lookup: LookupSpec | undefined;
  const missing = [...keyParams].filter((n) => !own.has(n));
  if (missing.length > 0) {
    const path = shortestPath(occurrence, anchors, adjacency);
    lookup = pathLookup(occurrence, path, missing, own, paramNames, bound, classes, columnTerms, spec);
  }
  for (const n of keyParams) {
    const name = paramNames[n - 1]!;
    render.set(name, own.has(n) ? `{${own.get(n)}}` : `{${QUERY_LOOKUP}.${name}}`);
  }
  const rewrite = (list: string[] | undefined) => list?.map((source) => rewriteTemplate(source, render));
  const derived: RuleSpec & { lookup?: Record<string, LookupSpec> } = {
    table: qualifiedName(occurrence.schema, occurrence.table),
    // A table whose columns the query never reads counts by its rows alone: inserts and deletes.
    ...(occurrence.read === null
      ? {}
      : occurrence.read.size === 0
        ? { on: ['insert', 'delete', 'truncate'] }
        : { when: { changed: [...occurrence.read].sort() } }),
    ...(lookup === undefined ? {} : { lookup: { [QUERY_LOOKUP]: lookup } }),
  };
  for (const kind of ['invalidate', 'bump', 'tags', 'patterns'] as const) {
    const list = rewrite(spec[kind]);
    if (list !== undefined) derived[kind] = list;
  }
  if (spec.fallback !== undefined) derived.fallback = spec.fallback;
  return { alias: occurrence.alias, spec: derived };
}
