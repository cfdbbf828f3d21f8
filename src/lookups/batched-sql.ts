import type { Row, Value } from '../core/change.js';
import { scanSql } from '../lib/sql-lexer.js';

/**
 * One lookup query run for many parameter lists in one statement. Each parameter travels as an
 * array (one element per list), unnest() turns the arrays back into one row per list, and the
 * lookup's own SQL runs once per such row as a LATERAL subquery, its `$k` now a column of that row:
 *
 *   SELECT set, rows.* FROM ROWS FROM (unnest($1::pg_catalog._int4), …) WITH ORDINALITY AS params (p1, …, set)
 *   CROSS JOIN LATERAL (SELECT lookup.*, row_number() OVER () AS row FROM (<sql>) AS lookup) AS rows
 *   ORDER BY set, row
 *
 * The array casts happen before any row is read, so a value that is not valid input for its
 * parameter's type fails the statement as it fails its own query, whether or not the query would
 * have read it. row_number() keeps each list's rows in the order the query gave them, which the
 * final sort (not stable by itself) would otherwise lose.
 */

/** The helper names: quoted, with a space, so that no lookup's own names meet them. */
const PARAMS = '"cdc-invalidator params"';
const SET = '"cdc-invalidator set"';
const LOOKUP = '"cdc-invalidator lookup"';
const ROWS = '"cdc-invalidator rows"';
const ROW = '"cdc-invalidator row"';

/** One parameter as the server inferred it in the lookup's SQL. */
export interface ParameterType {
  /** The array type's name, as SQL: `pg_catalog._int4`, `public."_My Type"`. */
  arrayType: string;
  /** The element type's array delimiter (pg_type.typdelim): `,` for all but a few, like box's `;`. */
  delimiter: string;
}

/**
 * The combined statement for a lookup's SQL and its parameters' types, or why the SQL cannot be
 * rewritten (the lookup then runs once per parameter list, as a lone request always does).
 */
export function batchedLookupSql(
  sql: string,
  types: readonly ParameterType[],
  options: { standardConformingStrings: boolean },
): { sql: string } | { problem: string } {
  const scan = scanSql(sql, options);
  if (scan.problem !== null) return { problem: scan.problem };
  if (types.length === 0) return { problem: 'the query has no parameter' };
  if (scan.semicolons.some((at) => at < scan.end)) return { problem: 'the query is more than one statement' };
  for (const p of scan.placeholders) {
    if (p.index < 1 || p.index > types.length) {
      return { problem: `the query has ${types.length} parameter(s) but the text names $${p.index}` };
    }
  }
  let body = '';
  let from = 0;
  for (const p of scan.placeholders) {
    // Parenthesised, so that `$1::int`, `$1[2]` and `($1).field` keep their meaning.
    body += `${sql.slice(from, p.start)}(${PARAMS}.p${p.index})`;
    from = p.end;
  }
  body += sql.slice(from, scan.end);
  // ROWS FROM, the spelled-out form of unnest(a, b, …), which takes only an unqualified unnest.
  const arrays = types.map((t, i) => `pg_catalog.unnest($${i + 1}::${t.arrayType})`).join(', ');
  const columns = types.map((_, i) => `p${i + 1}`).join(', ');
  return {
    sql:
      `SELECT ${PARAMS}.${SET}, ${ROWS}.*\n` +
      `FROM ROWS FROM (${arrays}) WITH ORDINALITY AS ${PARAMS} (${columns}, ${SET})\n` +
      `CROSS JOIN LATERAL (SELECT ${LOOKUP}.*, pg_catalog.row_number() OVER () AS ${ROW} FROM (\n` +
      // The newline ends a -- comment the query may end with before the closing parenthesis.
      `${body}\n` +
      `) AS ${LOOKUP}) AS ${ROWS}\n` +
      `ORDER BY 1, ${ROWS}.${ROW}`,
  };
}

/**
 * The array literal that carries one parameter's values, one per list: each element quoted, so
 * that its text reaches the type's input function as it would as a parameter of its own.
 */
export function arrayLiteral(values: readonly Value[], delimiter: string): string {
  let literal = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i > 0) literal += delimiter;
    literal += v === null ? 'NULL' : `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${literal}}`;
}

const NEEDS_ESCAPE = /[\\"]/;
const ESCAPED = /[\\"]/g;

/** A result column as node-postgres describes it. */
export interface ResultField {
  name: string;
  dataTypeID: number;
}

const BOOL_OID = 16;

/**
 * Result rows as lookups give them to templates: columns by name (of two with one name, the later
 * wins, as in node-postgres's row objects), values in text form, booleans as `true`/`false` like
 * the replication stream's. `from` and `to` select the query's own columns among the fields.
 */
export function textRows(fields: readonly ResultField[], rows: ReadonlyArray<readonly Value[]>, from = 0, to = fields.length): Row[] {
  const booleans = new Set<string>();
  for (let i = from; i < to; i++) if (fields[i]!.dataTypeID === BOOL_OID) booleans.add(fields[i]!.name);
  return rows.map((values) => {
    const row: Record<string, Value> = Object.create(null);
    for (let i = from; i < to; i++) row[fields[i]!.name] = values[i] ?? null;
    for (const column of booleans) {
      const v = row[column];
      if (v === 't') row[column] = 'true';
      else if (v === 'f') row[column] = 'false';
    }
    return row;
  });
}

/**
 * The combined statement's rows split back into one list per parameter list: the first column is
 * the list's 1-based position, the last the row number, the ones between the query's own.
 */
export function splitBatchedRows(fields: readonly ResultField[], rows: ReadonlyArray<readonly Value[]>, sets: number): Row[][] {
  if (fields.length < 2) throw new Error(`combined lookup gave ${fields.length} column(s), not at least 2`);
  const out: Row[][] = Array.from({ length: sets }, () => []);
  const converted = textRows(fields, rows, 1, fields.length - 1);
  rows.forEach((values, i) => {
    const set = Number(values[0]);
    if (!Number.isInteger(set) || set < 1 || set > sets) throw new Error(`combined lookup gave a row for list ${values[0]} of ${sets}`);
    out[set - 1]!.push(converted[i]!);
  });
  return out;
}
