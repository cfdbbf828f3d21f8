// A query rule's parameters: their names for $1..$n, the ones its keys use, and its key templates rewritten
// over what renders each parameter in a derived rule.
import { parseTemplate, TemplateSyntaxError } from './template.js';
import { Refused, type Node } from './query-tree.js';
import type { QueryRuleSpec } from './rule-spec.js';

export function checkParams(names: readonly string[], select: Node): string[] {
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
export function keyParameters(spec: QueryRuleSpec, names: readonly string[]): Set<number> {
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
export function rewriteTemplate(source: string, render: ReadonlyMap<string, string>): string {
  const t = parseTemplate(source);
  return t.parts
    .map((part) => (part.kind === 'text' ? part.text.replace(/\{/g, '{{').replace(/\}/g, '}}') : part.kind === 'column' ? render.get(part.name)! : ''))
    .join('');
}
