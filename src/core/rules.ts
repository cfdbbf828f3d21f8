import type { Operation } from './change.js';
import { OPERATIONS } from './change.js';
import { parseTemplate, TemplateSyntaxError, type Template } from './template.js';

/** A rule as written in a mapping file, after schema validation. */
export interface RuleSpec {
  table: string;
  on?: Operation[] | undefined;
  when?: { changed?: string[] | undefined } | undefined;
  invalidate?: string[] | undefined;
  bump?: string[] | undefined;
  fallback?: { invalidate?: string[] | undefined; bump?: string[] | undefined } | undefined;
}

export interface MappingSpec {
  /** The file the rules came from, for messages. */
  file: string;
  rules: RuleSpec[];
}

export interface CompiledActions {
  invalidate: readonly Template[];
  bump: readonly Template[];
}

export interface CompiledRule {
  /** `file#rules[i]`: names the rule in logs, fallback records and dead letters. */
  id: string;
  schema: string;
  table: string;
  on: ReadonlySet<Operation>;
  /** Columns of which at least one must differ for an update to count; null: every update counts. */
  changed: readonly string[] | null;
  actions: CompiledActions;
  fallback: CompiledActions | null;
}

export interface RuleSet {
  /** Rules by `schema.table`. Rules for the same table add up. */
  readonly byTable: ReadonlyMap<string, readonly CompiledRule[]>;
  /** The same rules by schema, then table: the per-change lookup, which builds no string. */
  readonly bySchema: ReadonlyMap<string, ReadonlyMap<string, readonly CompiledRule[]>>;
  /** Every mapped table, as [schema, table]. */
  readonly tables: ReadonlyArray<readonly [string, string]>;
}

export interface CompileProblem {
  file: string;
  /** Path inside the mapping document, e.g. ['rules', 2, 'invalidate', 0]. */
  path: (string | number)[];
  message: string;
}

export function tableKey(schema: string, table: string): string {
  return `${schema}.${table}`;
}

/**
 * Splits `schema.table` (or `table`, meaning public) on the first dot outside double quotes;
 * `"My Schema"."My.Table"` keeps quoted names as written, case and all.
 */
export function parseTableName(text: string): { schema: string; table: string } | string {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        current += '"';
        i++;
      } else if (ch === '"') {
        quoted = false;
      } else {
        current += ch;
      }
    } else if (ch === '"') {
      quoted = true;
    } else if (ch === '.') {
      parts.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  if (quoted) return `unclosed quote in table name "${text}"`;
  parts.push(current);
  if (parts.length > 2 || parts.some((p) => p === '')) {
    return `table must be "table" or "schema.table", got "${text}"`;
  }
  return parts.length === 1 ? { schema: 'public', table: parts[0]! } : { schema: parts[0]!, table: parts[1]! };
}

/**
 * Compiles every mapping file's rules once at start: templates parsed, rules indexed by table.
 * Returns every problem found rather than stopping at the first, so a user fixes them in one go.
 */
export function compileRules(mappings: MappingSpec[]): { rules: RuleSet; problems: CompileProblem[] } {
  const byTable = new Map<string, CompiledRule[]>();
  const tables: Array<readonly [string, string]> = [];
  const problems: CompileProblem[] = [];

  for (const mapping of mappings) {
    mapping.rules.forEach((spec, index) => {
      const at = (...rest: (string | number)[]) => ['rules', index, ...rest];
      const problem = (path: (string | number)[], message: string) =>
        problems.push({ file: mapping.file, path, message });

      const name = parseTableName(spec.table);
      if (typeof name === 'string') {
        problem(at('table'), name);
        return;
      }

      const compileList = (list: string[] | undefined, path: (string | number)[]): Template[] =>
        (list ?? []).flatMap((source, i) => {
          try {
            return [parseTemplate(source)];
          } catch (err) {
            if (err instanceof TemplateSyntaxError) {
              problem([...path, i], err.message);
              return [];
            }
            throw err;
          }
        });

      const actions: CompiledActions = {
        invalidate: compileList(spec.invalidate, at('invalidate')),
        bump: compileList(spec.bump, at('bump')),
      };
      if ((spec.invalidate ?? []).length + (spec.bump ?? []).length === 0) {
        problem(at(), 'rule has no action: give it "invalidate" or "bump" keys');
      }

      let fallback: CompiledActions | null = null;
      if (spec.fallback !== undefined) {
        fallback = {
          invalidate: compileList(spec.fallback.invalidate, at('fallback', 'invalidate')),
          bump: compileList(spec.fallback.bump, at('fallback', 'bump')),
        };
        // A fallback runs exactly when row values cannot be had (unknown old values, TRUNCATE),
        // so its keys cannot depend on them.
        for (const kind of ['invalidate', 'bump'] as const) {
          fallback[kind].forEach((t, i) => {
            if (t.columns.length > 0) {
              problem(
                at('fallback', kind, i),
                `fallback key "${t.source}" uses {${t.columns[0]}}: fallback keys are fixed names, ` +
                  'because a fallback runs when row values are unknown',
              );
            }
          });
        }
        if (fallback.invalidate.length + fallback.bump.length === 0) {
          problem(at('fallback'), 'fallback has no action: give it "invalidate" or "bump" keys');
        }
      }

      const changed = spec.when?.changed ?? null;
      if (changed !== null && changed.length === 0) {
        problem(at('when', 'changed'), 'when.changed lists no column');
      }

      const rule: CompiledRule = {
        id: `${mapping.file}#rules[${index}]`,
        schema: name.schema,
        table: name.table,
        // TRUNCATE removes every row: a rule that reacts to deletes reacts to it too.
        on: new Set(
          spec.on === undefined
            ? OPERATIONS
            : spec.on.includes('delete') && !spec.on.includes('truncate')
              ? [...spec.on, 'truncate']
              : spec.on,
        ),
        changed,
        actions,
        fallback,
      };
      const key = tableKey(rule.schema, rule.table);
      let list = byTable.get(key);
      if (list === undefined) {
        list = [];
        byTable.set(key, list);
        tables.push([rule.schema, rule.table]);
      }
      list.push(rule);
    });
  }
  const bySchema = new Map<string, Map<string, CompiledRule[]>>();
  for (const list of byTable.values()) {
    const first = list[0]!;
    let tablesOfSchema = bySchema.get(first.schema);
    if (tablesOfSchema === undefined) {
      tablesOfSchema = new Map();
      bySchema.set(first.schema, tablesOfSchema);
    }
    tablesOfSchema.set(first.table, list);
  }
  return { rules: { byTable, bySchema, tables }, problems };
}

/** Every column a rule's templates and conditions name: what `check` verifies against the table. */
export function ruleColumns(rule: CompiledRule): string[] {
  const all = [
    ...rule.actions.invalidate,
    ...rule.actions.bump,
    ...(rule.fallback?.invalidate ?? []),
    ...(rule.fallback?.bump ?? []),
  ].flatMap((t) => t.columns);
  return [...new Set([...all, ...(rule.changed ?? [])])];
}
