// Coarse rules for a query rule whose shape is not supported: every table the query mentions deletes every
// key of the rule. Never wrong; a SCAN per change with patterns, or a tag the application registers keys under.
import { escapeGlob } from './glob.js';
import { qualifiedName, Refused, type DerivedRule, type Node, type QueryInput } from './query-tree.js';
import type { QueryRuleSpec, RuleSpec } from './rule-spec.js';
import { parseTemplate } from './template.js';

/** What `coarse: pattern` would derive, as the hand-written rules it amounts to: the hint of a refusal. */
export function coarseHint(spec: QueryRuleSpec, input: QueryInput): string {
  try {
    const { rules } = coarseRules({ ...spec, coarse: 'pattern' }, input);
    const written = rules.map((r) => `{ ${Object.entries(r.spec).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(', ')} }`);
    return `. Set "coarse: pattern" to cover it coarsely (any change to the tables it mentions deletes every key of the rule), as these rules written by hand would: ${written.join('; ')}`;
  } catch {
    return '';
  }
}

/**
 * One rule per table the query mentions anywhere (joins, subqueries, CTEs, set operations): any change
 * deletes every key of the rule, a parameter matching anything. Never wrong; a SCAN per change with
 * patterns, or nothing to scan with a tag the application registers the keys under.
 */
export function coarseRules(spec: QueryRuleSpec, input: QueryInput): { rules: DerivedRule[]; summary: string } {
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
