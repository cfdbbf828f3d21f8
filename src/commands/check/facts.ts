import type { TableFacts } from '../../core/table-facts.js';

export type { ColumnFacts, IdentityFacts, PartitionFacts, RelationFacts, RelationKind, TableFacts } from '../../core/table-facts.js';

/**
 * What `check` learns from the database and Redis. The gatherers fill these in with queries; the
 * checks turn them into report lines without any I/O, so every verdict is unit-testable from a
 * hand-written set of facts.
 */

/** A driver error, normalised: the SQLSTATE or Node error code when there is one. */
export interface Failure {
  code: string | null;
  message: string;
}

export type PostgresFacts = PostgresUnreachable | PostgresReached;

export interface PostgresUnreachable {
  reachable: false;
  /** `user@host:port/database`, never the password. */
  target: string;
  error: Failure;
}

export interface PostgresReached {
  reachable: true;
  target: string;
  server: ServerFacts;
  /** The configured publication's name as SQL needs it (quote_ident), whether or not it exists. */
  publicationSql: string;
  role: RoleFacts;
  /** The configured slot; null when it does not exist. */
  slot: SlotFacts | null;
  /** The configured publication; null when it does not exist. */
  publication: PublicationFacts | null;
  /** One entry per mapped table, in the order of the rule set. */
  tables: TableFacts[];
  /** Opening a replication connection as the worker does (IDENTIFY_SYSTEM). */
  replication: { ok: true } | { ok: false; error: Failure };
  /** Every lookup query of the rules, planned (EXPLAIN) as the worker's role. */
  lookups: LookupFacts[];
}

export interface LookupFacts {
  /** The rule's id, `file#rules[i]`. */
  rule: string;
  alias: string;
  /** Null when the query plans cleanly. */
  error: Failure | null;
}

export interface ServerFacts {
  /** `server_version`, e.g. `15.8`. */
  version: string;
  versionNum: number;
  database: string;
  /** The database name as SQL needs it (quote_ident). */
  databaseSql: string;
  inRecovery: boolean;
  walLevel: string;
  /** wal_level was changed in the configuration but waits for a restart. */
  walLevelPendingRestart: boolean;
  maxReplicationSlots: number;
  maxWalSenders: number;
  /** In MB; -1 is unlimited; null when the server has no such setting (before PostgreSQL 13). */
  maxSlotWalKeepSizeMb: number | null;
  /** Replication slots that exist in the whole cluster. */
  slotsInUse: number;
  /** WAL sender processes running now. */
  walSendersInUse: number;
}

export interface RoleFacts {
  name: string;
  /** The role name as SQL needs it (quote_ident). */
  sql: string;
  superuser: boolean;
  replication: boolean;
  /** CREATE on the current database: what CREATE PUBLICATION needs. */
  createOnDatabase: boolean;
}

export interface SlotFacts {
  name: string;
  /** `logical` or `physical`. */
  type: string;
  plugin: string | null;
  database: string | null;
  active: boolean;
  activePid: number | null;
  /** application_name and client address of the process streaming it, when visible. */
  activeApplication: string | null;
  activeClient: string | null;
  /** pg_current_wal_lsn() - restart_lsn: the WAL the slot holds back; null when unknown. */
  retainedBytes: number | null;
  /** reserved, extended, unreserved, lost; null before PostgreSQL 13 or when unknown. */
  walStatus: string | null;
}

export interface PublicationFacts {
  name: string;
  /** The publication name as SQL needs it (quote_ident). */
  sql: string;
  owner: string;
  /** The role may alter it (is a member of its owner role). */
  owned: boolean;
  allTables: boolean;
  /** publish_via_partition_root. */
  viaRoot: boolean;
  publishes: { insert: boolean; update: boolean; delete: boolean; truncate: boolean };
  /** What it publishes, as pg_publication_tables shows it (FOR ALL TABLES and schemas expanded). */
  tables: PublishedTable[];
}

export interface PublishedTable {
  schema: string;
  table: string;
  /** The columns sent (every column without a column list). */
  columns: string[];
  /** The row filter (PostgreSQL 15), or null. */
  rowFilter: string | null;
}

export type RedisFacts = RedisUnreachable | RedisReached;

export interface RedisUnreachable {
  reachable: false;
  /** `host:port` (and `/db`), never the password. */
  target: string;
  error: Failure;
}

export interface RedisReached {
  reachable: true;
  target: string;
  /** redis_version from INFO; null when INFO was refused. */
  version: string | null;
  /** master or slave, from INFO replication. */
  role: string | null;
  clusterEnabled: boolean;
  /** Replicas connected to the primary (on a cluster, to the master with fewest); null when unknown. */
  replicas: number | null;
  /** The probe key written and deleted, prefix included. */
  probeKey: string;
  write: { ok: true } | { ok: false; error: Failure };
  /** SCRIPT LOAD and EVALSHA of a script doing SET ... KEEPTTL; null when not tried (write failed). */
  script: { ok: true } | { ok: false; error: Failure } | null;
}
