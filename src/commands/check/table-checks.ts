import { suggest } from '../../config/validate.js';
import type { CompiledRule, RuleSet } from '../../core/rules.js';
import { ACTION_KINDS, ruleColumns, tableKey } from '../../core/rules.js';
import type { ColumnFacts, PostgresReached, RelationFacts, TableFacts } from './facts.js';
import { replicaIdentityFullSql, type Identity } from '../../core/replica-identity.js';
import { describeGap, rowTemplates, tableRequirements, type OldRowGap } from '../../core/table-requirements.js';
import { displayName, fail, listing, ok, quoted, warn, type CheckLine } from './report.js';

/** PostgreSQL 18 can publish generated columns; older servers never send them. */
const GENERATED_COLUMNS_PUBLISHED = 180000;

/**
 * Each mapped table: it exists and is a table, every column the rules name exists, and its replica
 * identity sends what the rules render from old rows.
 *
 * Unchanged TOASTed values get no line of their own: they are missing from new rows only when the
 * identity is not FULL, and then every update already renders an old row in which every non-key
 * column is unknown, so each template they could break is reported by the replica identity check,
 * whose fix (REPLICA IDENTITY FULL) covers both.
 */
export function tableChecks(facts: PostgresReached, rules: RuleSet, replicaIdentity: 'check' | 'full' = 'check'): CheckLine[] {
  return facts.tables.flatMap((t) =>
    oneTable(t, rules.byTable.get(tableKey(t.schema, t.table)) ?? [], facts.server.database, facts.server.versionNum, replicaIdentity),
  );
}

function oneTable(
  t: TableFacts,
  rules: readonly CompiledRule[],
  database: string,
  versionNum: number,
  replicaIdentity: 'check' | 'full',
): CheckLine[] {
  const name = displayName(t.schema, t.table);
  const ruleIds = listing(rules.map((r) => r.id));
  const rel = t.relation;
  if (rel === null) {
    const similar = t.similar.map((s) => displayName(s.schema, s.table));
    return [
      fail(
        `table ${name} (${ruleIds}) does not exist in database "${database}"`,
        similar.length > 0
          ? `correct the "table" of the rule: did you mean ${similar.join(' or ')}?`
          : 'correct the "table" of the rule, or the database in source.url',
      ),
    ];
  }
  if (rel.kind !== 'table' && rel.kind !== 'partitioned table') {
    return [
      fail(`${name} (${ruleIds}) is a ${rel.kind}, not a table: it has no row changes of its own`, 'map the tables it reads from instead'),
    ];
  }

  const columns = new Map(rel.columns.map((c) => [c.name, c]));
  const req = tableRequirements(rel, rules);
  const identity = req.identity;
  const lines: CheckLine[] = [];
  for (const rule of rules) lines.push(...missingColumns(name, rel, rule, columns));
  if (versionNum < GENERATED_COLUMNS_PUBLISHED) {
    for (const rule of rules) lines.push(...generatedColumns(name, rule, columns));
  }
  if (replicaIdentity === 'full' && !identity.full) {
    // run sets FULL itself where the rules need it; say so, and whether it may.
    if (identity.none || req.oldRowGaps.length > 0) {
      const why = identity.none ? `it has no replica identity (${identity.label})` : `${listing(req.oldRowGaps.map((g) => g.rule.id))} render${req.oldRowGaps.length === 1 ? 's' : ''} columns from old rows that ${identity.label} does not send`;
      lines.push(
        rel.owned
          ? ok(`table ${name}: run sets REPLICA IDENTITY FULL at start (source.replicaIdentity: full), because ${why}`)
          : fail(
              `table ${name}: run must set REPLICA IDENTITY FULL (source.replicaIdentity: full), because ${why}, but the role does not own the table (its owner is ${rel.owner})`,
              `${replicaIdentityFullSql(identity.targets)}  (as the owner)`,
            ),
      );
      return lines;
    }
  }
  if (identity.none) {
    lines.push(
      fail(
        `table ${name} has no replica identity (${identity.label}): once it is published, PostgreSQL rejects every UPDATE and DELETE on it`,
        `${replicaIdentityFullSql(identity.targets)}  (or add a primary key)`,
      ),
    );
  } else if (!identity.full) {
    for (const rule of rules) lines.push(...oldRows(name, rule, req.oldRowGaps.find((g) => g.rule === rule), columns, identity));
  }
  if (lines.length > 0) return lines;

  const named = [...new Set(rules.flatMap(ruleColumns))];
  const exist = named.length === 0 ? 'exists' : named.length === 1 ? `column ${named[0]} exists` : `columns ${listing(named)} exist`;
  return [ok(`table ${name}: ${exist}; ${identity.label}${identity.full ? '' : ' suffices'}`)];
}

function missingColumns(name: string, rel: RelationFacts, rule: CompiledRule, columns: Map<string, ColumnFacts>): CheckLine[] {
  return ruleColumns(rule)
    .filter((column) => !columns.has(column))
    .map((column) => {
      const users = quoted(ACTION_KINDS.flatMap((kind) => rule.actions[kind]).filter((t) => t.columns.includes(column)).map((t) => t.source));
      for (const lookup of rule.lookups.values()) {
        if (lookup.params.includes(column)) users.push(`lookup "${lookup.alias}" params`);
      }
      if (rule.changed?.includes(column)) users.push('when.changed');
      const hint = suggest(column, [...columns.keys()]);
      const all = rel.columns.map((c) => c.name).join(', ');
      return fail(
        `table ${name}: column "${column}" used by ${rule.id} ${listing(users)} does not exist`,
        hint === undefined
          ? `correct ${rule.id}: the columns of ${name} are ${all}`
          : `correct ${rule.id}: did you mean "${hint}"? (the columns of ${name} are ${all})`,
      );
    });
}

function generatedColumns(name: string, rule: CompiledRule, columns: Map<string, ColumnFacts>): CheckLine[] {
  const isGenerated = (c: string) => columns.get(c)?.generated === true;
  const affected = rowTemplates(rule).filter((t) => t.columns.some(isGenerated));
  if (affected.length === 0) return [];
  const generated = [...new Set(affected.flatMap((t) => t.columns.filter(isGenerated)))];
  const one = generated.length === 1;
  return [
    (rule.fallback === null ? fail : warn)(
      `table ${name}: ${rule.id} ${listing(quoted(affected.map((t) => t.source)))} ${affected.length === 1 ? 'uses' : 'use'} ` +
        `generated ${one ? 'column' : 'columns'} ${listing(quoted(generated))}, which logical replication does not send ` +
        `(before PostgreSQL 18): ${one ? 'its value is' : 'their values are'} always unknown, so every change ` +
        (rule.fallback === null ? 'becomes a dead letter' : 'runs the fallback instead'),
      `build the ${affected.length === 1 ? 'key' : 'keys'} from the columns the generated ${one ? 'column is' : 'columns are'} computed from`,
    ),
  ];
}

/**
 * Updates and deletes render the old row, which carries only the identity columns unless the
 * identity is FULL: a template naming any other column cannot be rendered there.
 */
function oldRows(
  name: string,
  rule: CompiledRule,
  gap: OldRowGap | undefined,
  columns: Map<string, ColumnFacts>,
  identity: Identity,
): CheckLine[] {
  const full = replicaIdentityFullSql(identity.targets);
  if (gap !== undefined) {
    return [
      (rule.fallback === null ? fail : warn)(
        `table ${name}: ${describeGap(gap, identity)} ` +
          (rule.fallback === null ? 'could not be invalidated: run refuses to start' : 'run the fallback instead'),
        rule.fallback === null ? `${full}  (or set source.replicaIdentity: full, or give the rule a fallback)` : full,
      ),
    ];
  }
  // Missing and generated columns have lines of their own.
  const unknown = (c: string) => columns.has(c) && columns.get(c)?.generated !== true && !identity.columns.has(c);
  const changed = (rule.changed ?? []).filter(unknown);
  if (rule.on.has('update') && changed.length > 0) {
    return [
      warn(
        `table ${name}: ${rule.id} when.changed cannot skip updates: the old ${changed.length === 1 ? 'value' : 'values'} of ` +
          `${listing(quoted(changed))} ${changed.length === 1 ? 'is' : 'are'} unknown (${identity.sends}), so every update counts as changed`,
        `${full}  (or accept the extra invalidations)`,
      ),
    ];
  }
  return [];
}
