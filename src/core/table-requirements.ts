import { suggest } from '../lib/suggest.js';
import { listing, quoted } from '../lib/text.js';
import { identityOf, replicaIdentityFullSql, type Identity } from './replica-identity.js';
import { ACTION_KINDS, ruleColumns, type CompileProblem, type CompiledRule } from './rules.js';
import type { RelationFacts } from './table-facts.js';

/** A template rendered from rows, with the table columns it reads: its own and its lookups' params. */
export interface RowTemplate {
  rule: CompiledRule;
  /** Path of the template inside its mapping file, e.g. ['rules', 0, 'invalidate', 1]. */
  path: (string | number)[];
  source: string;
  columns: string[];
}

/** Every template of a rule's own actions (fallback keys are fixed names and read no row). */
export function rowTemplates(rule: CompiledRule): RowTemplate[] {
  return ACTION_KINDS.flatMap((kind) =>
    rule.actions[kind].map((t, i) => ({
      rule,
      path: ['rules', rule.index, kind, i],
      source: t.source,
      columns: [...new Set([...t.columns, ...t.lookups.flatMap((alias) => rule.lookups.get(alias)?.params ?? [])])],
    })),
  );
}

/** A rule whose keys read old-row columns that the table's replica identity does not send. */
export interface OldRowGap {
  rule: CompiledRule;
  /** update and/or delete: the operations that render old rows. */
  ops: Array<'update' | 'delete'>;
  templates: RowTemplate[];
  /** The columns the old row lacks. */
  columns: string[];
}

export interface TableRequirements {
  identity: Identity;
  /** Columns the rules name that the table does not have: one problem per use, placed in its file. */
  missingColumns: CompileProblem[];
  /** Rules that cannot render their keys from old rows under this identity. */
  oldRowGaps: OldRowGap[];
  /** `ALTER TABLE ... REPLICA IDENTITY FULL;` for every table (or partition) that needs it. */
  fullSql: string;
}

/**
 * What a table must offer the rules mapped to it, against what the catalog says it offers. Pure:
 * `run` refuses to start on the problems and `check` reports them, from the same verdict.
 */
export function tableRequirements(rel: RelationFacts, rules: readonly CompiledRule[]): TableRequirements {
  const identity = identityOf(rel);
  const columns = new Map(rel.columns.map((c) => [c.name, c]));
  const names = rel.columns.map((c) => c.name);
  const missingColumns: CompileProblem[] = [];
  for (const rule of rules) {
    const missing = new Set(ruleColumns(rule).filter((c) => !columns.has(c)));
    if (missing.size === 0) continue;
    const place = (path: (string | number)[], column: string, what: string) => {
      const hint = suggest(column, names);
      missingColumns.push({
        file: rule.file,
        path,
        message:
          `${what} names column "${column}", which table ${rel.sql} does not have` +
          `${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; its columns are ${names.join(', ')}`,
      });
    };
    for (const t of rowTemplates(rule)) {
      for (const c of t.columns) if (missing.has(c)) place(t.path, c, `"${t.source}"`);
    }
    for (const kind of ACTION_KINDS) {
      rule.fallback?.[kind].forEach((t, i) => {
        for (const c of t.columns) if (missing.has(c)) place(['rules', rule.index, 'fallback', kind, i], c, `"${t.source}"`);
      });
    }
    rule.changed?.forEach((c, i) => {
      if (missing.has(c)) place(['rules', rule.index, 'when', 'changed', i], c, 'when.changed');
    });
  }

  const oldRowGaps: OldRowGap[] = [];
  if (!identity.full && !identity.none) {
    // A column that does not exist has its own problem; a generated one (never sent before
    // PostgreSQL 18) is reported by `check`.
    const unknown = (c: string) => columns.has(c) && columns.get(c)?.generated !== true && !identity.columns.has(c);
    for (const rule of rules) {
      const ops = (['update', 'delete'] as const).filter((op) => rule.on.has(op));
      if (ops.length === 0) continue;
      const templates = rowTemplates(rule).filter((t) => t.columns.some(unknown));
      if (templates.length === 0) continue;
      oldRowGaps.push({ rule, ops, templates, columns: [...new Set(templates.flatMap((t) => t.columns.filter(unknown)))] });
    }
  }
  return { identity, missingColumns, oldRowGaps, fullSql: replicaIdentityFullSql(identity.targets) };
}

/** `mappings/users.yaml#rules[0] renders "user:email:{email}" from old rows, but ...: "email" is unknown there`. */
export function describeGap(gap: OldRowGap, identity: Identity): string {
  const cols = gap.columns;
  return (
    `${gap.rule.id} renders ${listing(quoted(gap.templates.map((t) => t.source)))} from old rows, but ` +
    `${identity.sends}: ${listing(quoted(cols))} ${cols.length === 1 ? 'is' : 'are'} unknown there, so its ` +
    `${gap.ops.map((op) => `${op}s`).join(' and ')}`
  );
}

/**
 * The rules of a table that name columns it does not have (any more: a schema change while
 * streaming), each with those columns.
 */
export function rulesMissingColumns(rules: readonly CompiledRule[], columns: readonly string[]): { rule: CompiledRule; missing: string[] }[] {
  const have = new Set(columns);
  return rules.flatMap((rule) => {
    const missing = ruleColumns(rule).filter((c) => !have.has(c));
    return missing.length === 0 ? [] : [{ rule, missing }];
  });
}
