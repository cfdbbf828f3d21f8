import type { Row } from '../../core/change.js';
import { parseTableName, tableKey } from '../../core/rules.js';
import type { Logger } from '../../log.js';
import type { ColumnType } from './values.js';

/**
 * What a table's REPLICA IDENTITY lets Debezium know of an old row. Postgres sends the old row of
 * an update or delete whole only under FULL; under DEFAULT (the primary key), USING INDEX and
 * NOTHING it sends those columns alone, and Debezium fills every other column of `before` with a
 * stand-in ('' for a NOT NULL text, false, the column default, 0, or null). The event does not say
 * which columns are real, so the worker must know the identity from elsewhere: the catalog, a
 * declaration in the config, or, when neither tells, only the columns of the Kafka message key.
 */
export type ReplicaIdentity =
  | { kind: 'full' }
  /** DEFAULT, USING INDEX, NOTHING: these columns of an old row are real, the rest filler. */
  | { kind: 'columns'; columns: readonly string[] }
  /** DEFAULT declared, or nobody said: only the Kafka message key's columns are trusted. */
  | { kind: 'message-key' };

export interface TableInfo {
  identity: ReplicaIdentity;
  /** Column types, when the catalog was read (decodes values sent without the schema envelope). */
  columns?: ReadonlyMap<string, ColumnType>;
}

/** Where an event's table and log position are: what a catalog needs to answer for it. */
export interface EventTable {
  schema: string;
  table: string;
  /** source.lsn of the change, when the event has one. */
  lsn: bigint | null;
}

/** Answers "what do old rows of this table carry" for the events of a batch. */
export interface TableCatalog {
  /** Reads what it needs before the first batch; retryable faults are waited out. */
  start(): Promise<void>;
  /**
   * Makes sure that `info` answers truly for these events, reading the catalog again when one is
   * newer than the last read. `keepAlive` is called while a read is retried.
   */
  prepare(events: readonly EventTable[], keepAlive: () => Promise<void>): Promise<void>;
  info(event: EventTable): TableInfo;
  close(): Promise<void>;
}

/** The identity that trusts only what both trust: for partitions of one table, or across a change of identity. */
export function weaker(a: ReplicaIdentity, b: ReplicaIdentity): ReplicaIdentity {
  if (a.kind === 'message-key' || b.kind === 'message-key') return { kind: 'message-key' };
  if (a.kind === 'full') return b;
  if (b.kind === 'full') return a;
  const inB = new Set(b.columns);
  return { kind: 'columns', columns: a.columns.filter((c) => inB.has(c)) };
}

/**
 * The old row of an update or delete, with only what is real in it: every column under FULL, else
 * the identity's columns, from `before`, or, for an update whose key did not change (Debezium then
 * sends no `before`), from `after`, as the Postgres source does. A column left out is unknown.
 */
export function oldRowOf(before: Row | null, after: Row | null, identity: ReplicaIdentity, messageKey: readonly string[]): Row {
  if (identity.kind === 'full' && before !== null) return before;
  // An update without `before` on a table said to be FULL: it was not FULL when the row changed.
  const columns = identity.kind === 'columns' ? identity.columns : messageKey;
  const source = before ?? after ?? {};
  const row: Record<string, string | null | undefined> = Object.create(null);
  for (const column of columns) if (source[column] !== undefined) row[column] = source[column];
  return row;
}

/** The columns that identify the row in dead letters. */
export function keyColumnsOf(identity: ReplicaIdentity, messageKey: readonly string[]): readonly string[] {
  return identity.kind === 'columns' && identity.columns.length > 0 ? identity.columns : messageKey;
}

/** A `source.tableIdentities` entry: full, default (the message key's columns), nothing, or an index's columns. */
export type IdentityDeclaration = 'full' | 'default' | 'nothing' | { index: string[] };

/**
 * Identities declared in the config (`source.tableIdentities`), for a source without a database
 * to read them from. `"*"` covers every table not named. A mapped table nobody declared is warned
 * about once, with its first event from the PostgreSQL connector, and its old rows are read as their
 * message key only.
 */
export class DeclaredIdentities implements TableCatalog {
  private readonly declared = new Map<string, IdentityDeclaration>();
  private readonly fallback: IdentityDeclaration | undefined;
  /** Each table's answer, made once: the declarations do not change while running. */
  private readonly infos = new Map<string, TableInfo>();

  constructor(
    declarations: Readonly<Record<string, IdentityDeclaration>>,
    private readonly mappedTables: ReadonlyArray<readonly [string, string]>,
    private readonly log: Logger,
  ) {
    for (const [name, declaration] of Object.entries(declarations)) {
      const parsed = name === '*' ? undefined : parseTableName(name);
      if (typeof parsed === 'object') this.declared.set(tableKey(parsed.schema, parsed.table), declaration);
    }
    this.fallback = declarations['*'];
  }

  async start(): Promise<void> {}

  async prepare(): Promise<void> {}

  info(event: EventTable): TableInfo {
    const key = tableKey(event.schema, event.table);
    let info = this.infos.get(key);
    if (info === undefined) {
      const declaration = this.declarationOf(event.schema, event.table);
      info = infoOf(declaration);
      this.infos.set(key, info);
      // Said with the table's first PostgreSQL event, not at start: MySQL and MariaDB events need no identity.
      if (declaration === undefined && this.mappedTables.some(([schema, table]) => schema === event.schema && table === event.table)) {
        this.log.warn(
          { table: key, hint: 'declare it in source.tableIdentities, or set source.url for the worker to read it' },
          'replica identity unknown: old rows of updates and deletes are read as their message key only',
        );
      }
    }
    return info;
  }

  async close(): Promise<void> {}

  private declarationOf(schema: string, table: string): IdentityDeclaration | undefined {
    return this.declared.get(tableKey(schema, table)) ?? this.fallback;
  }
}

function infoOf(declaration: IdentityDeclaration | undefined): TableInfo {
  if (declaration === undefined) return { identity: { kind: 'message-key' } };
  if (declaration === 'full') return { identity: { kind: 'full' } };
  if (declaration === 'nothing') return { identity: { kind: 'columns', columns: [] } };
  // DEFAULT is the primary key, which is what Debezium's message key holds.
  if (declaration === 'default') return { identity: { kind: 'message-key' } };
  return { identity: { kind: 'columns', columns: declaration.index } };
}
