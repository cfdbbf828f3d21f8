import type { RuleSet } from '../../core/rules.js';
import { ruleColumns, tableKey } from '../../core/rules.js';
import type { PostgresReached, PublicationFacts, RelationFacts, TableFacts } from './facts.js';
import { displayName, fail, listing, ok, quoted, warn, type CheckLine } from './report.js';

const OPS = ['insert', 'update', 'delete', 'truncate'] as const;

type Mapped = TableFacts & { relation: RelationFacts };

/**
 * The configured publication: whether it exists or can be created, publishes every operation,
 * covers every mapped table, and sends whole rows of all of them.
 *
 * A mapped table missing from an existing publication is a warning when the role may add it (the
 * worker runs ALTER PUBLICATION ... ADD TABLE at start, as `run` documents), and a failure when
 * it may not (then the worker stops at start).
 */
export function publicationChecks(facts: PostgresReached, publicationName: string, rules: RuleSet): CheckLine[] {
  // Missing tables and views are reported by the table checks; only real tables matter here.
  const mapped = facts.tables.filter(
    (t): t is Mapped => t.relation !== null && (t.relation.kind === 'table' || t.relation.kind === 'partitioned table'),
  );
  const pub = facts.publication;
  if (pub === null) return missingPublication(facts, publicationName, mapped);

  const name = `publication "${pub.name}"`;
  const lines: CheckLine[] = [];
  const absent = OPS.filter((op) => !pub.publishes[op]);
  if (absent.length > 0) {
    lines.push(
      fail(
        `${name} does not publish ${listing(absent)}: those changes would never be invalidated, so the worker refuses to start`,
        `ALTER PUBLICATION ${pub.sql} SET (publish = 'insert, update, delete, truncate');`,
      ),
    );
  } else {
    lines.push(ok(`${name} publishes insert, update, delete and truncate`));
  }

  const partitioned = mapped.filter((t) => t.relation.kind === 'partitioned table');
  if (partitioned.length > 0 && !pub.viaRoot) {
    lines.push(
      fail(
        `${listing(partitioned.map((t) => displayName(t.schema, t.table)))} ${partitioned.length === 1 ? 'is' : 'are'} ` +
          `partitioned, and ${name} publishes their changes under the partitions' names, which no rule maps`,
        `ALTER PUBLICATION ${pub.sql} SET (publish_via_partition_root = true);`,
      ),
    );
  }
  // Without publish_via_partition_root a partitioned table is listed by its partitions: reported above.
  const checkable = mapped.filter((t) => pub.viaRoot || t.relation.kind === 'table');
  lines.push(...coverage(facts, pub, checkable, mapped.length));
  lines.push(...partialTables(pub, checkable, rules));
  return lines;
}

function missingPublication(facts: PostgresReached, publicationName: string, mapped: Mapped[]): CheckLine[] {
  const { role, server } = facts;
  const name = `publication "${publicationName}"`;
  const list = mapped.map((t) => t.relation.sql).join(', ');
  const create = `CREATE PUBLICATION ${facts.publicationSql} FOR TABLE ${list}`;
  const lines: CheckLine[] = [];

  const partitioned = mapped.filter((t) => t.relation.kind === 'partitioned table');
  if (partitioned.length > 0) {
    lines.push(
      fail(
        `${name} does not exist, and the one the worker would create publishes the changes of partitioned ` +
          `${listing(partitioned.map((t) => displayName(t.schema, t.table)))} under the partitions' names, which no rule maps`,
        `create it yourself, as the tables' owner: ${create} WITH (publish_via_partition_root = true);`,
      ),
    );
    return lines;
  }
  if (mapped.length === 0) return lines;

  const reasons: string[] = [];
  const lacksCreate = !role.superuser && !role.createOnDatabase;
  const notOwned = role.superuser ? [] : mapped.filter((t) => !t.relation.owned);
  if (lacksCreate) reasons.push(`it lacks CREATE on database "${server.database}"`);
  if (notOwned.length > 0) {
    reasons.push(`it does not own ${listing(notOwned.map((t) => `${displayName(t.schema, t.table)} (owner "${t.relation.owner}")`))}`);
  }
  if (reasons.length === 0) {
    lines.push(ok(`${name} does not exist yet: the worker creates it at start, FOR TABLE ${listing(mapped.map((t) => displayName(t.schema, t.table)))}`));
  } else {
    // Owning the tables, the role only needs CREATE; otherwise their owner has to create it.
    const fix =
      notOwned.length === 0
        ? `GRANT CREATE ON DATABASE ${server.databaseSql} TO ${role.sql};  (or create it yourself: ${create};)`
        : `create it as the owner of the tables: ${create};`;
    lines.push(fail(`${name} does not exist, and role "${role.name}" cannot create it: ${reasons.join('; ')}`, fix));
  }
  return lines;
}

function coverage(facts: PostgresReached, pub: PublicationFacts, tables: Mapped[], mappedCount: number): CheckLine[] {
  const name = `publication "${pub.name}"`;
  const published = new Set(pub.tables.map((t) => tableKey(t.schema, t.table)));
  const missing = tables.filter((t) => !published.has(tableKey(t.schema, t.table)));
  if (missing.length === 0) {
    if (tables.length === 0) return [];
    const all = pub.allTables ? ' (FOR ALL TABLES)' : '';
    return [ok(`${name} covers ${mappedCount === 1 ? 'the mapped table' : `the ${mappedCount} mapped tables`}${all}`)];
  }
  const names = listing(missing.map((t) => displayName(t.schema, t.table)));
  const alter = `ALTER PUBLICATION ${pub.sql} ADD TABLE ${missing.map((t) => t.relation.sql).join(', ')};`;
  const { role } = facts;
  const reasons: string[] = [];
  if (!role.superuser) {
    if (!pub.owned) reasons.push(`it does not own the publication (owner "${pub.owner}")`);
    const notOwned = missing.filter((t) => !t.relation.owned);
    if (notOwned.length > 0) {
      reasons.push(`it does not own ${listing(notOwned.map((t) => `${displayName(t.schema, t.table)} (owner "${t.relation.owner}")`))}`);
    }
  }
  if (reasons.length === 0) {
    return [warn(`${name} does not include ${names}: the worker adds ${missing.length === 1 ? 'it' : 'them'} at start`, `${alter}  (to add now)`)];
  }
  return [
    fail(
      `${name} does not include ${names}, and role "${role.name}" cannot add ${missing.length === 1 ? 'it' : 'them'}: ` +
        `${reasons.join('; ')}. The worker would stop at start`,
      `as the owner of the publication and the tables: ${alter}`,
    ),
  ];
}

/** Row filters and column lists (PostgreSQL 15) leave changes or values out: keys go unrendered. */
function partialTables(pub: PublicationFacts, tables: Mapped[], rules: RuleSet): CheckLine[] {
  const lines: CheckLine[] = [];
  const byKey = new Map(pub.tables.map((t) => [tableKey(t.schema, t.table), t]));
  for (const t of tables) {
    const published = byKey.get(tableKey(t.schema, t.table));
    if (published === undefined) continue;
    const table = displayName(t.schema, t.table);
    const readd =
      `BEGIN; ALTER PUBLICATION ${pub.sql} DROP TABLE ${t.relation.sql}; ` +
      `ALTER PUBLICATION ${pub.sql} ADD TABLE ${t.relation.sql}; COMMIT;`;
    if (published.rowFilter !== null) {
      lines.push(
        fail(
          `publication "${pub.name}" publishes only the rows of ${table} WHERE ${published.rowFilter}: ` +
            'changes to other rows never reach the worker, and their keys are never invalidated',
          `publish the table without a row filter: ${readd}`,
        ),
      );
    }
    const sent = new Set(published.columns);
    const existing = new Set(t.relation.columns.map((c) => c.name));
    const needed = new Set((rules.byTable.get(tableKey(t.schema, t.table)) ?? []).flatMap(ruleColumns));
    const unsent = [...needed].filter((c) => existing.has(c) && !sent.has(c));
    if (unsent.length > 0) {
      lines.push(
        fail(
          `publication "${pub.name}" sends only some columns of ${table}: ${unsent.length === 1 ? 'column' : 'columns'} ` +
            `${listing(quoted(unsent))} that the rules use ${unsent.length === 1 ? 'is' : 'are'} never sent`,
          `publish the table without a column list: ${readd}`,
        ),
      );
    }
  }
  return lines;
}
