import type pg from 'pg';
import { batchedLookupSql, type ParameterType } from './batched-sql.js';

/** How a lookup's parameter lists are run: together in one statement, or each in its own. */
export type LookupPlan = { batched: true; sql: string; types: ParameterType[] } | { batched: false; reason: string };

/** Prepared on a pooled connection and deallocated before the connection goes back. */
const PROBE = 'cdc_invalidator_lookup_probe';

/**
 * The parameter types the server infers for a statement, as PREPARE without a type list infers
 * them: exactly what it infers for the lookup's own query, whose parameters are sent untyped.
 * pg_prepared_statements has them; PREPARE is allowed in the pool's read-only sessions. Array types
 * are named with their schema (pg_catalog._int4), so that no search_path can make the name another's.
 */
const PARAMETER_TYPES = `
  SELECT quote_ident(an.nspname) || '.' || quote_ident(a.typname) AS array_type, e.typdelim AS delimiter,
         e.typarray = 0 OR EXISTS (SELECT 1 FROM pg_catalog.pg_type x WHERE x.typarray = e.oid) AS unbatchable,
         current_setting('standard_conforming_strings') AS scs
  FROM pg_catalog.pg_prepared_statements s
  CROSS JOIN LATERAL unnest(s.parameter_types::oid[]) WITH ORDINALITY AS t (oid, ord)
  -- A parameter the server could not type is sent as text.
  JOIN pg_catalog.pg_type e ON e.oid = CASE WHEN t.oid = 'pg_catalog.unknown'::regtype THEN 'pg_catalog.text'::regtype ELSE t.oid END
  LEFT JOIN pg_catalog.pg_type a ON a.oid = e.typarray
  LEFT JOIN pg_catalog.pg_namespace an ON an.oid = a.typnamespace
  WHERE s.name = $1
  ORDER BY t.ord`;

/**
 * Works out how to run a lookup's SQL for many parameter lists: learns its parameter types, builds
 * the combined statement and has the server prepare it. Returns `batched: false` with the reason
 * when the SQL is of a shape the combined statement cannot take; that answer holds for as long as
 * the SQL and the schema stay as they are. Throws when the server could not answer (a lost
 * connection, or the lookup's own SQL not preparing, which its own runs will report).
 */
export async function planLookup(client: pg.ClientBase, sql: string): Promise<LookupPlan> {
  const rows = await prepared(client, sql, async () => (await client.query<Record<string, string>>(PARAMETER_TYPES, [PROBE])).rows);
  if (rows.length === 0) return { batched: false, reason: 'the query has no parameter' };
  const unbatchable = rows.findIndex((r) => r['unbatchable'] === 't');
  if (unbatchable >= 0) return { batched: false, reason: `$${unbatchable + 1} is an array, or of a type without arrays` };
  const types = rows.map((r) => ({ arrayType: r['array_type']!, delimiter: r['delimiter']! }));
  const built = batchedLookupSql(sql, types, { standardConformingStrings: rows[0]!['scs'] !== 'off' });
  if ('problem' in built) return { batched: false, reason: built.problem };
  try {
    const count = await prepared(client, built.sql, async () => {
      const r = await client.query<{ n: string }>('SELECT cardinality(parameter_types) AS n FROM pg_catalog.pg_prepared_statements WHERE name = $1', [PROBE]);
      return Number(r.rows[0]?.n);
    });
    // Each parameter of the combined statement is one of the arrays: any other count means the
    // rewrite read the SQL differently from the server.
    if (count !== types.length) return { batched: false, reason: `the combined statement has ${count} parameters, not ${types.length}` };
  } catch (err) {
    if (isStatementError(err)) return { batched: false, reason: (err as Error).message };
    throw err;
  }
  return { batched: true, sql: built.sql, types };
}

/** Runs `use` while `sql` is prepared as PROBE on the client. */
async function prepared<T>(client: pg.ClientBase, sql: string, use: () => Promise<T>): Promise<T> {
  // The extended protocol takes one statement only, whatever the text holds. The newline ends a
  // -- comment the SQL may end with.
  await client.query({ text: `PREPARE ${PROBE} AS\n${sql}\n`, queryMode: 'extended' } as pg.QueryConfig);
  try {
    return await use();
  } finally {
    await client.query(`DEALLOCATE ${PROBE}`);
  }
}

/**
 * An error about the statement itself (syntax, names, types: SQLSTATE classes 42 and 0A), which
 * will come back as long as the SQL and the schema stay as they are; not a lost connection, a
 * timeout or a value the server rejected.
 */
export function isStatementError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code.startsWith('42') || code.startsWith('0A'));
}
