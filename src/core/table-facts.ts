/**
 * What the catalog says of a mapped table: its kind, columns and replica identity. Read by `check`
 * and by `run` at start; the verdicts on these facts are pure functions.
 */

export interface TableFacts {
  schema: string;
  table: string;
  /** Null when no relation of that name exists. */
  relation: RelationFacts | null;
  /** When it does not exist: tables whose name matches ignoring case, in any schema. */
  similar: Array<{ schema: string; table: string }>;
}

export type RelationKind = 'table' | 'partitioned table' | 'view' | 'materialized view' | 'foreign table' | 'other';

/** What decides the old row a table's updates and deletes carry. */
export interface IdentityFacts {
  replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
  primaryKey: string[];
  /** Columns of the REPLICA IDENTITY USING INDEX index; null when there is none. */
  identityIndex: string[] | null;
}

export interface RelationFacts extends IdentityFacts {
  /** pg_class OID: how the stream names the table, whatever it is called later. */
  oid: number;
  /** `schema.table` as SQL needs it (quote_ident on each part). */
  sql: string;
  kind: RelationKind;
  owner: string;
  /** The role owns it (is a member of its owner role): what CREATE/ALTER PUBLICATION needs. */
  owned: boolean;
  columns: ColumnFacts[];
  /** The leaf partitions of a partitioned table, each with its own replica identity; else empty. */
  partitions: PartitionFacts[];
}

export interface PartitionFacts extends IdentityFacts {
  sql: string;
}

export interface ColumnFacts {
  name: string;
  /** A generated column: logical replication does not send it (before PostgreSQL 18). */
  generated: boolean;
}
