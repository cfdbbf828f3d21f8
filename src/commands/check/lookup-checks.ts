import type { LookupFacts, PostgresReached } from './facts.js';
import { fail, ok, type CheckLine } from './report.js';

/** Each lookup query plans cleanly as the worker's role: syntax, tables, columns, types, privileges. */
export function lookupChecks(facts: PostgresReached): CheckLine[] {
  return facts.lookups.map((lookup) => {
    const name = `${lookup.rule} lookup "${lookup.alias}"`;
    if (lookup.error === null) return ok(`${name}: the query plans, with read access for role "${facts.role.name}"`);
    return fail(`${name}: the query does not plan: ${lookup.error.message}`, lookupFix(lookup, facts.role.sql));
  });
}

function lookupFix(lookup: LookupFacts, role: string): string {
  const where = `lookup.${lookup.alias}.sql of ${lookup.rule}`;
  const error = lookup.error!;
  switch (error.code) {
    case '42501': {
      // "permission denied for table users" (or view, schema, function, sequence).
      const m = /permission denied for (table|view|materialized view|schema|function|sequence) (.+)$/.exec(error.message);
      if (m === null) return `grant role ${role} what the query reads`;
      const [, kind, object] = m;
      if (kind === 'schema') return `GRANT USAGE ON SCHEMA ${object} TO ${role};`;
      if (kind === 'function') return `GRANT EXECUTE ON FUNCTION ${object} TO ${role};`;
      return `GRANT SELECT ON ${kind === 'sequence' ? 'SEQUENCE' : 'TABLE'} ${object} TO ${role};  (qualify it with its schema if needed)`;
    }
    case '42P18':
      return `give each parameter a type in ${where}, e.g. $1::bigint`;
    case '57014':
      return `planning took longer than the lookup's timeoutMs: simplify the query, or raise timeoutMs in ${lookup.rule}`;
    default:
      return `correct ${where}`;
  }
}
