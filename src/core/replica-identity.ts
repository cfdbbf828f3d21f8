import { listing, plural } from '../lib/text.js';
import type { IdentityFacts, RelationFacts } from './table-facts.js';

/** What the old row of an update or delete carries, as the table checks need it. */
export interface Identity {
  /** For the ok line: `REPLICA IDENTITY DEFAULT (primary key id)`. */
  label: string;
  /** For problem lines: `REPLICA IDENTITY DEFAULT sends only the primary key (id)`. */
  sends: string;
  full: boolean;
  /** No identity at all: PostgreSQL refuses updates and deletes once the table is published. */
  none: boolean;
  /** The columns an old row carries (when not FULL). */
  columns: ReadonlySet<string>;
  /** The tables to ALTER ... REPLICA IDENTITY FULL (SQL names): the partitions of a partitioned table. */
  targets: string[];
}

/**
 * A partitioned table's changes are those of its partitions, each with its own replica identity
 * (ALTER TABLE on the parent does not reach them): the old row carries what every partition sends.
 */
export function identityOf(rel: RelationFacts): Identity {
  if (rel.kind !== 'partitioned table' || rel.partitions.length === 0) return single(rel, rel.sql);
  const leaves = rel.partitions.map((p) => single(p, p.sql));
  const count = (list: Identity[]) => plural(list.length, 'partition');
  const missing = leaves.filter((l) => l.none);
  if (missing.length > 0) {
    return {
      label: `none on ${count(missing)}`,
      sends: 'nothing for those',
      full: false,
      none: true,
      columns: new Set(),
      targets: missing.flatMap((l) => l.targets),
    };
  }
  const partial = leaves.filter((l) => !l.full);
  if (partial.length === 0) {
    return { ...leaves[0]!, label: `REPLICA IDENTITY FULL on every partition`, targets: [] };
  }
  // Only the columns every partition sends are known in an old row.
  const columns = new Set([...partial[0]!.columns].filter((c) => partial.every((l) => l.columns.has(c))));
  const labels = [...new Set(partial.map((l) => l.label))];
  const label = `${labels.join(', ')} on ${count(partial)}${partial.length < leaves.length ? ` (FULL on ${leaves.length - partial.length})` : ''}`;
  return {
    label,
    sends: `${label} sends only ${columns.size === 0 ? 'no column they share' : `columns ${listing([...columns])}`}`,
    full: false,
    none: false,
    columns,
    targets: partial.flatMap((l) => l.targets),
  };
}

function single(facts: IdentityFacts, sql: string): Identity {
  const none = (label: string): Identity => ({ label, sends: 'nothing', full: false, none: true, columns: new Set(), targets: [sql] });
  switch (facts.replicaIdentity) {
    case 'full':
      return { label: 'REPLICA IDENTITY FULL', sends: 'the whole row', full: true, none: false, columns: new Set(), targets: [] };
    case 'nothing':
      return none('REPLICA IDENTITY NOTHING');
    case 'index': {
      const cols = facts.identityIndex ?? [];
      if (cols.length === 0) return none('REPLICA IDENTITY USING INDEX, whose index is gone');
      return {
        label: `REPLICA IDENTITY USING INDEX (${cols.join(', ')})`,
        sends: `REPLICA IDENTITY USING INDEX sends only the index columns (${cols.join(', ')})`,
        full: false,
        none: false,
        columns: new Set(cols),
        targets: [sql],
      };
    }
    case 'default':
      if (facts.primaryKey.length === 0) return none('REPLICA IDENTITY DEFAULT and no primary key');
      return {
        label: `REPLICA IDENTITY DEFAULT (primary key ${facts.primaryKey.join(', ')})`,
        sends: `REPLICA IDENTITY DEFAULT sends only the primary key (${facts.primaryKey.join(', ')})`,
        full: false,
        none: false,
        columns: new Set(facts.primaryKey),
        targets: [sql],
      };
  }
}

/** The statements that make every target send whole old rows; a long list is shortened. */
export function replicaIdentityFullSql(targets: readonly string[]): string {
  const MAX = 4;
  const shown = targets.slice(0, MAX).map((t) => `ALTER TABLE ${t} REPLICA IDENTITY FULL;`);
  const more = targets.length - shown.length;
  return more > 0 ? `${shown.join(' ')} (and the same for ${plural(more, 'more partition')})` : shown.join(' ');
}
