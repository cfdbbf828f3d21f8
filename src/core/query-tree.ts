// The parts of a query rule's parse tree (libpg_query's JSON) that the derivation reads: the tables of
// FROM and their aliases, column references, equalities, and conditions written back as SQL.
import type { LookupSpec, RuleSpec } from './rule-spec.js';

export type Node = Record<string, unknown>;

/** One table occurrence's derived rule, with the alias it has in the query (for messages and explain). */
export interface DerivedRule {
  alias: string;
  spec: RuleSpec & { lookup?: Record<string, LookupSpec> };
}

/** What every query rule is read into before its shape is looked at. */
export interface QueryInput {
  tree: unknown;
  select: Node;
  paramNames: string[];
  keyParams: Set<number>;
}


export interface Occurrence {
  alias: string;
  schema: string;
  table: string;
  /** Columns the query reads; null: all of them (`*`). */
  read: Set<string> | null;
  /** Conditions on this occurrence alone, as SQL (those that could be written back; others are dropped). */
  filters: string[];
}

export interface ColumnTerm {
  kind: 'column';
  occurrence: Occurrence;
  column: string;
}

/** Why a query rule cannot be derived. 'shape': the query is valid but not supported (coarse can cover it). */
export class Refused extends Error {
  constructor(
    message: string,
    readonly path: (string | number)[] = ['query'],
    readonly kind: 'shape' | 'input' = 'shape',
  ) {
    super(message);
  }
}


export const HAND_WRITTEN =
  'write its rules by hand (one per table: its keys, a lookup back to the parameters\' table, and a fallback tag or version bump where a key cannot be named)';

// --- the FROM clause ---

export function collectFrom(item: unknown, occurrences: Occurrence[], conditions: Node[]): void {
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
export type Resolve = (fields: readonly Node[]) => ColumnTerm | Occurrence[];

/** Column references to the occurrence and column they name. */
export function resolver(occurrences: readonly Occurrence[]): Resolve {
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

export function asEquality(node: Node, resolve: Resolve): [Operand, Operand] | undefined {
  const e = node['A_Expr'] as Node | undefined;
  if (e === undefined || e['kind'] !== 'AEXPR_OP' || operatorName(e) !== '=') return undefined;
  const a = operand(e['lexpr'], resolve);
  const b = operand(e['rexpr'], resolve);
  if (a === undefined || b === undefined) return undefined;
  if (a.kind === 'param' && b.kind === 'param') return undefined;
  if (a.kind !== 'column' && b.kind !== 'column') return undefined;
  return [a, b];
}

export function splitAnd(node: Node): Node[] {
  const b = node['BoolExpr'] as Node | undefined;
  if (b !== undefined && b['boolop'] === 'AND_EXPR') return asArray(b['args']).flatMap((arg) => splitAnd(arg as Node));
  return [node];
}

/** Columns (recorded as read by their table), parameters and subqueries anywhere below `node`. */
export function references(node: unknown, resolve: Resolve, outputNames?: ReadonlySet<string>): { columns: ColumnTerm[]; params: number[]; sublink: boolean } {
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

export function addFilter(occurrence: Occurrence, condition: Node, resolve: Resolve): void {
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

export function operatorName(e: Node): string | undefined {
  const names = asArray(e['name']).map((x) => ((x as Node)['String'] as Node | undefined)?.['sval']);
  return names.length === 1 && typeof names[0] === 'string' ? names[0] : undefined;
}

export function describe(node: Node): string {
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

// --- small helpers ---

export function asArray(value: unknown): unknown[] {
  return Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
}

export function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

/** `schema.table` as mapping files and SQL both write it, quoting what needs it. */
export function qualifiedName(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}
