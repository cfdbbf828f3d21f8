import type pg from 'pg';
import type { ColumnFacts, PartitionFacts, RelationFacts, RelationKind, TableFacts } from '../../core/table-facts.js';

const KINDS: Record<string, RelationKind> = {
  r: 'table',
  p: 'partitioned table',
  v: 'view',
  m: 'materialized view',
  f: 'foreign table',
};
const IDENTITIES = { d: 'default', n: 'nothing', f: 'full', i: 'index' } as const;

/**
 * Select-list items for the replica identity of pg_class `c`: relreplident, and the columns of its
 * primary key and of its identity index, in index order. Shared with the Debezium source's catalog.
 */
export const IDENTITY_KEYS_SQL = `c.relreplident AS identity,
  ${indexColumns('indisprimary')} AS primary_key,
  ${indexColumns('indisreplident')} AS identity_index`;

function indexColumns(flag: 'indisprimary' | 'indisreplident'): string {
  return `(SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))
     FROM pg_catalog.pg_index i
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
    WHERE i.indrelid = c.oid AND i.${flag})`;
}

/** Select-list items describing the replica identity of pg_class `c` (in namespace `n`). */
const IDENTITY_COLUMNS = `
  quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS sql, ${IDENTITY_KEYS_SQL}`;

interface IdentityRow {
  sql: string;
  identity: keyof typeof IDENTITIES;
  primary_key: string[] | null;
  identity_index: string[] | null;
}

function identityFacts(row: IdentityRow): PartitionFacts {
  return {
    sql: row.sql,
    replicaIdentity: IDENTITIES[row.identity],
    primaryKey: row.primary_key ?? [],
    identityIndex: row.identity_index,
  };
}

/**
 * One mapped table: its kind, owner, columns and replica identity (of each partition, when it is
 * partitioned); when it does not exist, the tables whose name differs only in case.
 */
export async function tableFacts(client: pg.Client, schema: string, table: string): Promise<TableFacts> {
  const found = await client.query<IdentityRow & { oid: number; kind: string; owner: string; owned: boolean }>(
    `SELECT c.oid, c.relkind AS kind, pg_catalog.pg_get_userbyid(c.relowner) AS owner,
            pg_catalog.pg_has_role(c.relowner, 'USAGE') AS owned, ${IDENTITY_COLUMNS}
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')`,
    [schema, table],
  );
  const row = found.rows[0];
  if (row === undefined) {
    const similar = await client.query<{ schema: string; table: string }>(
      `SELECT n.nspname AS schema, c.relname AS table
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE lower(c.relname) = lower($2) AND c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
        ORDER BY n.nspname = $1 DESC, n.nspname, c.relname LIMIT 5`,
      [schema, table],
    );
    return { schema, table, relation: null, similar: similar.rows };
  }
  const columns = await client.query<{ name: string; generated: string }>(
    `SELECT a.attname::text AS name, a.attgenerated AS generated
       FROM pg_catalog.pg_attribute a
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [row.oid],
  );
  // The partitions carry the rows, and each its own replica identity.
  const partitions =
    row.kind === 'p'
      ? await client.query<IdentityRow>(
          `SELECT ${IDENTITY_COLUMNS}
             FROM pg_catalog.pg_partition_tree($1) t
             JOIN pg_catalog.pg_class c ON c.oid = t.relid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE t.isleaf AND c.relkind = 'r'
            ORDER BY n.nspname, c.relname`,
          [row.oid],
        )
      : { rows: [] };
  const relation: RelationFacts = {
    ...identityFacts(row),
    oid: Number(row.oid),
    kind: KINDS[row.kind] ?? 'other',
    owner: row.owner,
    owned: row.owned,
    columns: columns.rows.map((c): ColumnFacts => ({ name: c.name, generated: c.generated !== '' })),
    partitions: partitions.rows.map(identityFacts),
  };
  return { schema, table, relation, similar: [] };
}
