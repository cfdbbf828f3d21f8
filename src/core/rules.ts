import { scanSql } from '../lib/sql-lexer.js';
import type { Operation } from './change.js';
import { OPERATIONS } from './change.js';
import { deriveQueryRules, type ParseSql } from './query-rules.js';
import type { ActionsSpec, LookupSpec, QueryRuleSpec, RuleSpec } from './rule-spec.js';
import { parseTemplate, TemplateSyntaxError, type Template } from './template.js';

export type { ActionsSpec, LookupSpec, RuleSpec } from './rule-spec.js';

/** A rule of a mapping file: a table rule, or a query rule (docs/configuration.md#query-rules). */
export type RuleEntry = Omit<RuleSpec, 'table'> &
  Partial<Omit<QueryRuleSpec, keyof ActionsSpec | 'fallback'>> & {
    table?: string | undefined;
  };

export interface MappingSpec {
  /** The file the rules came from, for messages. */
  file: string;
  rules: RuleEntry[];
}

export interface CompileOptions {
  /** PostgreSQL's parser: needed when a rule has a query (config/load.ts loads it then). */
  parseSql?: ParseSql | undefined;
}

export interface CompiledActions {
  invalidate: readonly Template[];
  bump: readonly Template[];
  tags: readonly Template[];
  patterns: readonly Template[];
}

export const ACTION_KINDS = ['invalidate', 'bump', 'tags', 'patterns'] as const;

/** A lookup of a rule: run once per distinct parameter list within a batch. */
export interface CompiledLookup extends LookupSpec {
  alias: string;
  /**
   * Short, and the same for every lookup with this SQL, whichever rule declares it: request ids
   * start with it (lookupRequestId), so identical lookups share their requests.
   */
  key: string;
}

export interface CompiledRule {
  /** `file#rules[i]`: names the rule in logs, fallback records and dead letters (a query rule's: `file#rules[i](alias)`). */
  id: string;
  /** The mapping file and the rule's index in it, to place a problem found later (at start). */
  file: string;
  index: number;
  schema: string;
  table: string;
  on: ReadonlySet<Operation>;
  /** Columns of which at least one must differ for an update to count; null: every update counts. */
  changed: readonly string[] | null;
  /** Lookups by name; empty for most rules. */
  lookups: ReadonlyMap<string, CompiledLookup>;
  actions: CompiledActions;
  fallback: CompiledActions | null;
  /** The rule as written, or as derived from a query rule: what `explain --rule` prints. */
  spec?: RuleSpec;
}

export interface RuleSet {
  /** Rules by `schema.table`. Rules for the same table add up. */
  readonly byTable: ReadonlyMap<string, readonly CompiledRule[]>;
  /** The same rules by schema, then table: the per-change lookup, which builds no string. */
  readonly bySchema: ReadonlyMap<string, ReadonlyMap<string, readonly CompiledRule[]>>;
  /** Every mapped table, as [schema, table]. */
  readonly tables: ReadonlyArray<readonly [string, string]>;
  /** Whether any rule declares a lookup (the worker then needs a database to query). */
  readonly hasLookups: boolean;
}

export interface CompileProblem {
  file: string;
  /** Path inside the mapping document, e.g. ['rules', 2, 'invalidate', 0]. */
  path: (string | number)[];
  message: string;
  /** Errors stop the worker from starting; warnings are printed. Default: error. */
  severity?: 'error' | 'warning';
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
export function compileRules(mappings: MappingSpec[], options: CompileOptions = {}): { rules: RuleSet; problems: CompileProblem[] } {
  const byTable = new Map<string, CompiledRule[]>();
  const tables: Array<readonly [string, string]> = [];
  const problems: CompileProblem[] = [];
  const lookupKeys = new Map<string, string>();

  for (const mapping of mappings) {
    mapping.rules.forEach((entry, index) => {
      if (entry === undefined) return;
      if (entry.query === undefined) {
        if (entry.table !== undefined) compileOne({ ...entry, table: entry.table }, index, '');
        return;
      }
      const at = (...rest: (string | number)[]) => ['rules', index, ...rest];
      if (options.parseSql === undefined) {
        problems.push({ file: mapping.file, path: at('query'), message: 'query rules need the SQL parser, which was not loaded' });
        return;
      }
      const derived = deriveQueryRules({ ...entry, query: entry.query }, options.parseSql);
      for (const p of derived.problems) {
        problems.push({ file: mapping.file, path: at(...p.path), message: p.message, ...(p.severity === undefined ? {} : { severity: p.severity }) });
      }
      for (const rule of derived.rules) compileOne(rule.spec, index, `(${rule.alias})`);
    });

    function compileOne(spec: RuleSpec, index: number, suffix: string): void {
      const at = (...rest: (string | number)[]) => ['rules', index, ...rest];
      const problem = (path: (string | number)[], message: string) =>
        problems.push({ file: mapping.file, path, message });

      const name = parseTableName(spec.table);
      if (typeof name === 'string') {
        problem(at('table'), name);
        return;
      }

      const lookups = compileLookups(spec.lookup, lookupKeys, (path, message, severity) =>
        problems.push({ file: mapping.file, path: at('lookup', ...path), message, ...(severity ? { severity } : {}) }),
      );
      const aliases = new Set(lookups.keys());
      // A template that does not parse may be the one that uses a lookup: no "not used" warning then.
      let unparsed = 0;

      const compileList = (list: string[] | undefined, path: (string | number)[], names: ReadonlySet<string>): Template[] =>
        (list ?? []).flatMap((source, i) => {
          try {
            return [parseTemplate(source, names)];
          } catch (err) {
            if (err instanceof TemplateSyntaxError) {
              problem([...path, i], err.message);
              unparsed++;
              return [];
            }
            throw err;
          }
        });
      const compileActions = (from: ActionsSpec, path: (string | number)[], names: ReadonlySet<string>): CompiledActions => ({
        invalidate: compileList(from.invalidate, [...path, 'invalidate'], names),
        bump: compileList(from.bump, [...path, 'bump'], names),
        tags: compileList(from.tags, [...path, 'tags'], names),
        patterns: compileList(from.patterns, [...path, 'patterns'], names),
      });
      const count = (from: ActionsSpec) => ACTION_KINDS.reduce((n, kind) => n + (from[kind] ?? []).length, 0);

      const actions = compileActions(spec, at(), aliases);
      if (count(spec) === 0) {
        problem(at(), 'rule has no action: give it "invalidate", "bump", "tags" or "patterns"');
      }
      actions.patterns.forEach((_, i) =>
        problems.push({
          file: mapping.file,
          path: at('patterns', i),
          message:
            'a pattern is deleted with SCAN over the whole keyspace for every change that renders it: ' +
            'prefer keys, version bumps or tags where the application can name them',
          severity: 'warning',
        }),
      );
      const used = new Set(ACTION_KINDS.flatMap((kind) => actions[kind].flatMap((t) => t.lookups)));
      for (const alias of aliases) {
        if (!used.has(alias) && unparsed === 0) {
          problems.push({ file: mapping.file, path: at('lookup', alias), message: `lookup "${alias}" is not used by any key`, severity: 'warning' });
        }
      }

      let fallback: CompiledActions | null = null;
      if (spec.fallback !== undefined) {
        // A fallback runs exactly when row values cannot be had (unknown old values, TRUNCATE,
        // a failed lookup), so its keys cannot depend on them.
        fallback = compileActions(spec.fallback, at('fallback'), new Set());
        for (const kind of ACTION_KINDS) {
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
        if (count(spec.fallback) === 0) {
          problem(at('fallback'), 'fallback has no action: give it "invalidate", "bump", "tags" or "patterns"');
        }
      }

      const changed = spec.when?.changed ?? null;
      if (changed !== null && changed.length === 0) {
        problem(at('when', 'changed'), 'when.changed lists no column');
      }

      const rule: CompiledRule = {
        id: `${mapping.file}#rules[${index}]${suffix}`,
        file: mapping.file,
        index,
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
        lookups,
        actions,
        fallback,
        spec,
      };
      const key = tableKey(rule.schema, rule.table);
      let list = byTable.get(key);
      if (list === undefined) {
        list = [];
        byTable.set(key, list);
        tables.push([rule.schema, rule.table]);
      }
      list.push(rule);
    }
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
  const hasLookups = [...byTable.values()].some((list) => list.some((r) => r.lookups.size > 0));
  return { rules: { byTable, bySchema, tables, hasLookups }, problems };
}

/**
 * Every column of the rule's table that its templates, conditions and lookup parameters name:
 * what `check` verifies against the table.
 */
export function ruleColumns(rule: CompiledRule): string[] {
  const all = ACTION_KINDS.flatMap((kind) => [...rule.actions[kind], ...(rule.fallback?.[kind] ?? [])]).flatMap(
    (t) => t.columns,
  );
  const params = [...rule.lookups.values()].flatMap((l) => l.params);
  return [...new Set([...all, ...(rule.changed ?? []), ...params])];
}

/**
 * Lookups of one rule. The SQL must use exactly $1..$n for its n params: a parameter that the
 * query never reads, or a placeholder with no parameter, is a mistake to catch before it runs.
 */
function compileLookups(
  specs: Record<string, LookupSpec> | undefined,
  keys: Map<string, string>,
  problem: (path: (string | number)[], message: string, severity?: 'warning') => void,
): Map<string, CompiledLookup> {
  const out = new Map<string, CompiledLookup>();
  for (const [alias, spec] of Object.entries(specs ?? {})) {
    const scan = scanSql(spec.sql);
    if (scan.semicolons.some((at) => at < scan.end)) {
      problem([alias, 'sql'], 'a lookup is one SELECT statement: remove everything after the ";"');
    }
    const placeholders = new Set(scan.placeholders.map((p) => p.index));
    const highest = Math.max(0, ...placeholders);
    if (highest !== spec.params.length) {
      problem(
        [alias, 'params'],
        `the query uses ${highest === 0 ? 'no placeholder' : `placeholders up to $${highest}`} but params lists ` +
          `${spec.params.length} column${spec.params.length === 1 ? '' : 's'}`,
      );
    } else {
      for (let n = 1; n <= highest; n++) {
        if (!placeholders.has(n)) problem([alias, 'sql'], `the query never uses $${n} (params[${n - 1}] "${spec.params[n - 1]}")`);
      }
    }
    let key = keys.get(spec.sql);
    if (key === undefined) {
      key = String(keys.size);
      keys.set(spec.sql, key);
    }
    out.set(alias, { alias, ...spec, key });
  }
  return out;
}
