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
import { escapeGlob } from './glob.js';
import type { LookupSpec, RuleSpec } from './rule-spec.js';
import { parseTemplate, TemplateSyntaxError } from './template.js';

/** A query rule as written in a mapping file, after schema validation. */
export interface QueryRuleSpec {
  /** The SELECT the application runs, with $1..$n for its parameters. */
  query: string;
  /** Names of $1..$n, in order: the key templates use them. */
  params?: string[] | undefined;
  invalidate?: string[] | undefined;
  bump?: string[] | undefined;
  tags?: string[] | undefined;
  patterns?: string[] | undefined;
  fallback?: RuleSpec['fallback'];
  lookupTimeoutMs?: number | undefined;
  lookupRetries?: number | undefined;
  /**
   * For a query whose shape is not supported: cover it coarsely instead of refusing it. Any change to a
   * table the query mentions then deletes every key of the rule: by pattern (a parameter matches
   * anything), or by a tag the application registers the keys under.
   */
  coarse?: 'pattern' | { tag: string } | undefined;
}

/** What the parser gives for one SQL text: its parse tree (libpg_query's JSON), or throws. */
export type ParseSql = (sql: string) => unknown;

export interface QueryProblem {
  /** Path inside the rule, e.g. ['query'] or ['invalidate', 0]. */
  path: (string | number)[];
  message: string;
  /** A coarse rule stands in for a query whose shape is not supported: a warning. Default: error. */
  severity?: 'warning';
}

/** One table occurrence's derived rule, with the alias it has in the query (for messages and explain). */
export interface DerivedRule {
  alias: string;
  spec: RuleSpec & { lookup?: Record<string, LookupSpec> };
}

export interface DerivedRules {
  rules: DerivedRule[];
  problems: QueryProblem[];
}

/** The lookup a derived rule walks its join path with. */
export const QUERY_LOOKUP = 'query';

type Node = Record<string, unknown>;

interface Occurrence {
  alias: string;
  schema: string;
  table: string;
  /** Columns the query reads; null: all of them (`*`). */
  read: Set<string> | null;
  /** Conditions on this occurrence alone, as SQL (those that could be written back; others are dropped). */
  filters: string[];
}

interface ColumnTerm {
  kind: 'column';
  occurrence: Occurrence;
  column: string;
}

/** Why a query rule cannot be derived. 'shape': the query is valid but not supported (coarse can cover it). */
class Refused extends Error {
  constructor(
    message: string,
    readonly path: (string | number)[] = ['query'],
    readonly kind: 'shape' | 'input' = 'shape',
  ) {
    super(message);
  }
}

interface QueryInput {
  tree: unknown;
  select: Node;
  paramNames: string[];
  keyParams: Set<number>;
}

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

/** What `coarse: pattern` would derive, as the hand-written rules it amounts to. */
function coarseHint(spec: QueryRuleSpec, input: QueryInput): string {
  try {
    const { rules } = coarseRules({ ...spec, coarse: 'pattern' }, input);
    const written = rules.map((r) => `{ ${Object.entries(r.spec).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} }`);
    return `. Set "coarse: pattern" to cover it coarsely (any change to the tables it mentions deletes every key of the rule), as these rules written by hand would: ${written.join('; ')}`;
  } catch {
    return '';
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

const HAND_WRITTEN =
  'write its rules by hand (one per table: its keys, a lookup back to the parameters\' table, and a fallback tag or version bump where a key cannot be named)';

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

/**
 * The lookup from a row of `from` along `path` (from's neighbour first, the parameters' table last):
 * each hop joined by the query's equalities, each table's own conditions kept, the row's columns as
 * $1..$n, the missing parameters read from the last table.
 */
function pathLookup(
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
function equalPairs(a: Occurrence, b: Occurrence, classes: UnionFind, columnTerms: ReadonlyMap<string, ColumnTerm>): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  for (const members of classes.groups()) {
    const terms = members.flatMap((m) => (columnTerms.has(m) ? [columnTerms.get(m)!] : []));
    const left = terms.find((t) => t.occurrence === a);
    const right = terms.find((t) => t.occurrence === b);
    if (left !== undefined && right !== undefined) pairs.push([left.column, right.column]);
  }
  return pairs;
}

function shortestPath(from: Occurrence, targets: readonly Occurrence[], adjacency: ReadonlyMap<Occurrence, ReadonlySet<Occurrence>>): Occurrence[] {
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

function bfs(start: Occurrence, adjacency: ReadonlyMap<Occurrence, ReadonlySet<Occurrence>>): Set<Occurrence> {
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

// --- coarse rules, for queries of an unsupported shape ---

/**
 * One rule per table the query mentions anywhere (joins, subqueries, CTEs, set operations): any change
 * deletes every key of the rule, a parameter matching anything. Never wrong; a SCAN per change with
 * patterns, or nothing to scan with a tag the application registers the keys under.
 */
function coarseRules(spec: QueryRuleSpec, input: QueryInput): { rules: DerivedRule[]; summary: string } {
  const tables = mentionedTables(input.tree);
  if (tables.length === 0) throw new Refused('the query mentions no table', ['query'], 'input');
  const tag = typeof spec.coarse === 'object' ? spec.coarse.tag : undefined;
  const asPattern = (source: string) =>
    parseTemplate(source)
      .parts.map((part) => (part.kind === 'text' ? escapeGlob(part.text).replace(/\{/g, '{{').replace(/\}/g, '}}') : '*'))
      .join('');
  const fixed = (kind: 'bump' | 'tags') =>
    (spec[kind] ?? []).map((source, i) => {
      if (parseTemplate(source).columns.length > 0) {
        throw new Refused(`"${source}" names a parameter: a coarse rule cannot name it (only invalidate and patterns keys can be matched by pattern)`, [kind, i], 'input');
      }
      return source;
    });
  const patterns = [...(tag === undefined ? (spec.invalidate ?? []) : []), ...(spec.patterns ?? [])].map(asPattern);
  const tags = [...fixed('tags'), ...(tag === undefined ? [] : [tag])];
  const bump = fixed('bump');
  const rules = tables.map(({ schema, table }) => {
    const derived: RuleSpec = { table: qualifiedName(schema, table) };
    if (patterns.length > 0) derived.patterns = patterns;
    if (tags.length > 0) derived.tags = tags;
    if (bump.length > 0) derived.bump = bump;
    if (spec.fallback !== undefined) derived.fallback = spec.fallback;
    return { alias: qualifiedName(schema, table), spec: derived };
  });
  const what = [
    ...patterns.map((p) => `pattern "${p}"`),
    ...(tag === undefined ? [] : [`tag "${tag}"`]),
  ];
  const summary =
    `any change to ${tables.map((t) => qualifiedName(t.schema, t.table)).join(', ')} deletes every key of this rule ` +
    `(${what.join(', ') || 'its fixed keys'}${patterns.length > 0 ? ': a SCAN of the keyspace each time' : ''})`;
  return { rules, summary };
}

/** Every table the query names, anywhere, sorted; names of its CTEs left out. */
function mentionedTables(tree: unknown): Array<{ schema: string; table: string }> {
  const ctes = new Set<string>();
  const found = new Map<string, { schema: string; table: string }>();
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== 'object') return;
    const n = value as Node;
    const range = n['RangeVar'] as Node | undefined;
    if (range !== undefined) {
      const table = String(range['relname']);
      const schema = typeof range['schemaname'] === 'string' ? range['schemaname'] : undefined;
      if (schema !== undefined || !ctes.has(table)) {
        const key = `${schema ?? 'public'}.${table}`;
        if (!found.has(key)) found.set(key, { schema: schema ?? 'public', table });
      }
    }
    for (const v of Object.values(n)) visit(v);
  };
  // CTE names first: a CTE may be used before (textually) the WITH that names it is visited.
  const collectCtes = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(collectCtes);
    if (value === null || typeof value !== 'object') return;
    const n = value as Node;
    const cte = n['CommonTableExpr'] as Node | undefined;
    if (cte !== undefined && typeof cte['ctename'] === 'string') ctes.add(cte['ctename']);
    for (const v of Object.values(n)) collectCtes(v);
  };
  collectCtes(tree);
  visit(tree);
  return [...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, t]) => t);
}

// --- the FROM clause ---

function collectFrom(item: unknown, occurrences: Occurrence[], conditions: Node[]): void {
  const node = item as Node;
  const range = node['RangeVar'] as Node | undefined;
  if (range !== undefined) {
    const table = String(range['relname']);
    const schema = typeof range['schemaname'] === 'string' ? range['schemaname'] : 'public';
    const alias = ((range['alias'] as Node | undefined)?.['aliasname'] as string | undefined) ?? table;
    if (occurrences.some((o) => o.alias === alias)) throw new Refused(`"${alias}" names two tables of the query: give each its own alias`);
    occurrences.push({ alias, schema, table, read: new Set(), filters: [] });
    return;
  }
  const join = node['JoinExpr'] as Node | undefined;
  if (join !== undefined) {
    const type = join['jointype'];
    if (type !== 'JOIN_INNER') {
      throw new Refused(`${String(type).replace('JOIN_', '')} JOIN is not supported, only inner joins on equalities: ${HAND_WRITTEN}`);
    }
    if (join['isNatural'] === true) throw new Refused('NATURAL JOIN is not supported: write the join with ON a.column = b.column');
    if (join['usingClause'] !== undefined) throw new Refused('JOIN ... USING is not supported: write the join with ON a.column = b.column');
    collectFrom(join['larg'], occurrences, conditions);
    collectFrom(join['rarg'], occurrences, conditions);
    if (join['quals'] !== undefined) conditions.push(join['quals'] as Node);
    return;
  }
  if (node['RangeSubselect'] !== undefined) throw new Refused(`subqueries in FROM are not supported: ${HAND_WRITTEN}`);
  if (node['RangeFunction'] !== undefined) throw new Refused(`functions in FROM are not supported: ${HAND_WRITTEN}`);
  throw new Refused(`unsupported FROM item ${Object.keys(node)[0]}`);
}

/** A column reference: the column it names, or the tables a `*` / `alias.*` covers. */
type Resolve = (fields: readonly Node[]) => ColumnTerm | Occurrence[];

/** Column references to the occurrence and column they name. */
function resolver(occurrences: readonly Occurrence[]): Resolve {
  return (fields) => {
    const names = fields.map((f) => (f['String'] as Node | undefined)?.['sval'] as string | undefined);
    const star = fields.length > 0 && fields[fields.length - 1]!['A_Star'] !== undefined;
    const qualifier = names.slice(0, -1);
    const column = star ? undefined : names[names.length - 1];
    let occurrence: Occurrence | undefined;
    if (qualifier.length === 0) {
      if (star) return [...occurrences];
      if (occurrences.length > 1) {
        throw new Refused(`column "${column}" is not qualified: in a query on several tables, write it as alias.${column}`);
      }
      occurrence = occurrences[0];
    } else {
      const [a, b] = qualifier.length === 1 ? [undefined, qualifier[0]] : [qualifier[qualifier.length - 2], qualifier[qualifier.length - 1]];
      occurrence = occurrences.find((o) => (a === undefined ? o.alias === b : o.schema === a && o.table === b && o.alias === o.table));
      if (occurrence === undefined) throw new Refused(`"${qualifier.join('.')}" in "${names.join('.')}" names no table of the query`);
    }
    if (star) return [occurrence!];
    return { kind: 'column', occurrence: occurrence!, column: column! };
  };
}

// --- expressions ---

type Operand = ColumnTerm | { kind: 'param'; number: number } | { kind: 'const' };

function operand(node: unknown, resolve: Resolve): Operand | undefined {
  const n = node as Node;
  if (n['TypeCast'] !== undefined) {
    // A cast of a parameter or a constant keeps it one; a cast of a column is an expression of it.
    const inner = operand((n['TypeCast'] as Node)['arg'], resolve);
    return inner?.kind === 'column' ? undefined : inner;
  }
  if (n['ParamRef'] !== undefined) return { kind: 'param', number: Number((n['ParamRef'] as Node)['number']) };
  if (n['A_Const'] !== undefined) return { kind: 'const' };
  if (n['ColumnRef'] !== undefined) {
    const r = resolve(asArray((n['ColumnRef'] as Node)['fields']) as Node[]);
    return Array.isArray(r) ? undefined : r;
  }
  return undefined;
}

function asEquality(node: Node, resolve: Resolve): [Operand, Operand] | undefined {
  const e = node['A_Expr'] as Node | undefined;
  if (e === undefined || e['kind'] !== 'AEXPR_OP' || operatorName(e) !== '=') return undefined;
  const a = operand(e['lexpr'], resolve);
  const b = operand(e['rexpr'], resolve);
  if (a === undefined || b === undefined) return undefined;
  if (a.kind === 'param' && b.kind === 'param') return undefined;
  if (a.kind !== 'column' && b.kind !== 'column') return undefined;
  return [a, b];
}

function splitAnd(node: Node): Node[] {
  const b = node['BoolExpr'] as Node | undefined;
  if (b !== undefined && b['boolop'] === 'AND_EXPR') return asArray(b['args']).flatMap((arg) => splitAnd(arg as Node));
  return [node];
}

/** Columns (recorded as read by their table), parameters and subqueries anywhere below `node`. */
function references(node: unknown, resolve: Resolve, outputNames?: ReadonlySet<string>): { columns: ColumnTerm[]; params: number[]; sublink: boolean } {
  const out = { columns: [] as ColumnTerm[], params: [] as number[], sublink: false };
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) {
      for (const v of value) visit(v);
      return;
    }
    if (value === null || typeof value !== 'object') return;
    const n = value as Node;
    if (n['SubLink'] !== undefined || n['RangeSubselect'] !== undefined) {
      out.sublink = true;
      return;
    }
    if (n['ParamRef'] !== undefined) {
      out.params.push(Number((n['ParamRef'] as Node)['number']));
      return;
    }
    if (n['ColumnRef'] !== undefined) {
      const fields = asArray((n['ColumnRef'] as Node)['fields']) as Node[];
      const only = fields.length === 1 ? ((fields[0]!['String'] as Node | undefined)?.['sval'] as string | undefined) : undefined;
      if (only !== undefined && outputNames?.has(only)) return;
      const r = resolve(fields);
      if (Array.isArray(r)) {
        // `*` or `alias.*` reads every column (count(*) is no column reference: it reads none).
        for (const o of r) o.read = null;
      } else {
        out.columns.push(r);
        r.occurrence.read?.add(r.column);
      }
      return;
    }
    for (const v of Object.values(n)) visit(v);
  };
  visit(node);
  return out;
}

function addFilter(occurrence: Occurrence, condition: Node, resolve: Resolve): void {
  const sql = deparse(condition, resolve);
  if (sql !== undefined) occurrence.filters.push(sql);
}

/**
 * SQL text of a condition on one table, for the lookups that join it; undefined for anything outside
 * this small subset (then the condition is left out, which can only add results, never lose one).
 */
function deparse(node: unknown, resolve: Resolve): string | undefined {
  const n = node as Node;
  if (n['ColumnRef'] !== undefined) {
    const r = resolve(asArray((n['ColumnRef'] as Node)['fields']) as Node[]);
    return Array.isArray(r) ? undefined : `${quoteIdent(r.occurrence.alias)}.${quoteIdent(r.column)}`;
  }
  if (n['A_Const'] !== undefined) return constant(n['A_Const'] as Node);
  if (n['TypeCast'] !== undefined) {
    const cast = n['TypeCast'] as Node;
    const arg = deparse(cast['arg'], resolve);
    const names = asArray((cast['typeName'] as Node | undefined)?.['names']).map((x) => (x as Node)['String'] as Node | undefined);
    const type = names.map((s) => s?.['sval']).filter((s): s is string => typeof s === 'string' && s !== 'pg_catalog');
    if (arg === undefined || type.length !== 1 || !/^[a-z_][a-z0-9_ ]*$/.test(type[0]!)) return undefined;
    return `(${arg})::${type[0]}`;
  }
  if (n['A_Expr'] !== undefined) {
    const e = n['A_Expr'] as Node;
    const op = operatorName(e);
    const left = deparse(e['lexpr'], resolve);
    if (left === undefined || op === undefined || !/^[=<>!~*]+$/.test(op)) return undefined;
    if (e['kind'] === 'AEXPR_OP' || e['kind'] === 'AEXPR_LIKE' || e['kind'] === 'AEXPR_ILIKE') {
      const right = deparse(e['rexpr'], resolve);
      return right === undefined ? undefined : `(${left} ${op} ${right})`;
    }
    if (e['kind'] === 'AEXPR_IN') {
      const items = asArray((e['rexpr'] as Node | undefined)?.['List'] !== undefined ? ((e['rexpr'] as Node)['List'] as Node)['items'] : e['rexpr']).map((x) => deparse(x, resolve));
      if (items.length === 0 || items.some((x) => x === undefined)) return undefined;
      return `(${left} ${op === '=' ? 'IN' : 'NOT IN'} (${items.join(', ')}))`;
    }
    return undefined;
  }
  if (n['BoolExpr'] !== undefined) {
    const b = n['BoolExpr'] as Node;
    const args = asArray(b['args']).map((x) => deparse(x, resolve));
    if (args.some((x) => x === undefined)) return undefined;
    if (b['boolop'] === 'NOT_EXPR') return `(NOT ${args[0]})`;
    return `(${args.join(b['boolop'] === 'OR_EXPR' ? ' OR ' : ' AND ')})`;
  }
  if (n['NullTest'] !== undefined) {
    const t = n['NullTest'] as Node;
    const arg = deparse(t['arg'], resolve);
    return arg === undefined ? undefined : `(${arg} IS ${t['nulltesttype'] === 'IS_NULL' ? '' : 'NOT '}NULL)`;
  }
  if (n['BooleanTest'] !== undefined) {
    const t = n['BooleanTest'] as Node;
    const arg = deparse(t['arg'], resolve);
    const test = String(t['booltesttype']).replace(/^IS_/, 'IS ').replace('_', ' ');
    return arg === undefined ? undefined : `(${arg} ${test})`;
  }
  return undefined;
}

function constant(c: Node): string | undefined {
  if (c['isnull'] === true) return 'NULL';
  const ival = c['ival'] as Node | undefined;
  if (ival !== undefined) return String(ival['ival'] ?? 0);
  const fval = c['fval'] as Node | undefined;
  if (fval !== undefined) return String(fval['fval']);
  const boolval = c['boolval'] as Node | undefined;
  if (boolval !== undefined) return boolval['boolval'] === true ? 'true' : 'false';
  const sval = c['sval'] as Node | undefined;
  if (sval !== undefined) return `'${String(sval['sval'] ?? '').replace(/'/g, "''")}'`;
  return undefined;
}

function operatorName(e: Node): string | undefined {
  const names = asArray(e['name']).map((x) => ((x as Node)['String'] as Node | undefined)?.['sval']);
  return names.length === 1 && typeof names[0] === 'string' ? names[0] : undefined;
}

function describe(node: Node): string {
  const sub = node['SubLink'] as Node | undefined;
  if (sub !== undefined) {
    const type = sub['subLinkType'];
    return type === 'EXISTS_SUBLINK' ? 'EXISTS (SELECT ...)' : type === 'ANY_SUBLINK' ? 'IN (SELECT ...)' : type === 'ALL_SUBLINK' ? 'ALL (SELECT ...)' : '(SELECT ...)';
  }
  const e = node['A_Expr'] as Node | undefined;
  if (e !== undefined) return `an expression with ${operatorName(e) ?? 'an operator'}`;
  const b = node['BoolExpr'] as Node | undefined;
  if (b !== undefined) return `${String(b['boolop']).replace('_EXPR', '')}`;
  return Object.keys(node)[0] ?? 'an expression';
}

// --- parameters and keys ---

function checkParams(names: readonly string[], select: Node): string[] {
  const numbers = new Set<number>();
  const visit = (value: unknown): void => {
    if (Array.isArray(value)) return value.forEach(visit);
    if (value === null || typeof value !== 'object') return;
    const n = value as Node;
    if (n['ParamRef'] !== undefined) numbers.add(Number((n['ParamRef'] as Node)['number']));
    for (const v of Object.values(n)) visit(v);
  };
  visit(select);
  const highest = Math.max(0, ...numbers);
  if (names.length !== highest) {
    throw new Refused(
      `the query uses ${highest === 0 ? 'no parameter' : `$1..$${highest}`} but params names ${names.length}: give each ` +
        `placeholder a name, in order, for the key templates`,
      ['params'],
      'input',
    );
  }
  for (let n = 1; n <= highest; n++) {
    if (!numbers.has(n)) throw new Refused(`the query never uses $${n} (params[${n - 1}] "${names[n - 1]}")`, ['params', n - 1], 'input');
  }
  names.forEach((name, i) => {
    if (names.indexOf(name) !== i) throw new Refused(`parameter name "${name}" is given twice`, ['params', i], 'input');
  });
  return [...names];
}

/** The parameters the key templates use, checked to be parameter names. */
function keyParameters(spec: QueryRuleSpec, names: readonly string[]): Set<number> {
  const used = new Set<number>();
  let count = 0;
  for (const kind of ['invalidate', 'bump', 'tags', 'patterns'] as const) {
    (spec[kind] ?? []).forEach((source, i) => {
      count++;
      let columns: readonly string[];
      try {
        const t = parseTemplate(source);
        columns = t.columns;
      } catch (err) {
        if (err instanceof TemplateSyntaxError) {
          const known = names.length === 0 ? 'the query has no parameter' : `parameters: ${names.join(', ')}`;
          throw new Refused(`${err.message} (a query rule's keys name its parameters; ${known})`, [kind, i], 'input');
        }
        throw err;
      }
      for (const column of columns) {
        const n = names.indexOf(column);
        if (n < 0) {
          const known = names.length === 0 ? 'the query has no parameter' : `its parameters are ${names.join(', ')}`;
          throw new Refused(`"{${column}}" in "${source}" is not a parameter of the query (${known})`, [kind, i], 'input');
        }
        used.add(n + 1);
      }
    });
  }
  if (count === 0) throw new Refused('rule has no action: give it "invalidate", "bump", "tags" or "patterns"', [], 'input');
  return used;
}

/** A template over parameter names, with each name replaced by what renders it in the derived rule. */
function rewriteTemplate(source: string, render: ReadonlyMap<string, string>): string {
  const t = parseTemplate(source);
  return t.parts
    .map((part) => (part.kind === 'text' ? part.text.replace(/\{/g, '{{').replace(/\}/g, '}}') : part.kind === 'column' ? render.get(part.name)! : ''))
    .join('');
}

// --- small helpers ---

function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
}

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** `schema.table` as mapping files and SQL both write it, quoting what needs it. */
function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

class UnionFind {
  readonly #parent = new Map<string, string>();

  add(x: string): void {
    if (!this.#parent.has(x)) this.#parent.set(x, x);
  }

  find(x: string): string {
    this.add(x);
    let root = x;
    while (this.#parent.get(root) !== root) root = this.#parent.get(root)!;
    let at = x;
    while (at !== root) {
      const next = this.#parent.get(at)!;
      this.#parent.set(at, root);
      at = next;
    }
    return root;
  }

  union(a: string, b: string): void {
    const ra = this.find(a);
    const rb = this.find(b);
    if (ra !== rb) this.#parent.set(ra, rb);
  }

  members(x: string): string[] {
    const root = this.find(x);
    return [...this.#parent.keys()].filter((k) => this.find(k) === root);
  }

  groups(): string[][] {
    const byRoot = new Map<string, string[]>();
    for (const k of [...this.#parent.keys()]) {
      const root = this.find(k);
      let list = byRoot.get(root);
      if (list === undefined) byRoot.set(root, (list = []));
      list.push(k);
    }
    return [...byRoot.values()];
  }
}
