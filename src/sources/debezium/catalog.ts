import pg from 'pg';
import { parseLsn } from '../../core/lsn.js';
import { tableKey } from '../../core/rules.js';
import { SourceUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../lib/backoff.js';
import { IDENTITY_KEYS_SQL } from '../../lib/pg/catalog.js';
import { libpqConnectionString } from '../../lib/pg/sql.js';
import { weaker, type EventTable, type ReplicaIdentity, type TableCatalog, type TableInfo } from './identity.js';
import { columnType, type ColumnType } from './values.js';

/** Mapped tables still missing from the database are looked for again at most this often. */
const MISSING_RECHECK_MS = 10_000;
/** Even without newer events, identities and column types are read again this often. */
const MAX_AGE_MS = 60_000;

// The LSN is read first, in its own statement: a change at or before it committed after every
// ALTER TABLE ... REPLICA IDENTITY that preceded it (the ALTER holds an exclusive lock until it is
// visible), so the catalog statements that follow, each on a new snapshot, see that identity.
const LSN_SQL = `SELECT (CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn()
                      ELSE pg_catalog.pg_current_wal_insert_lsn() END)::text AS lsn`;

const MAPPED = `unnest($1::text[], $2::text[]) AS w(schema, name)
  JOIN pg_catalog.pg_namespace n ON n.nspname = w.schema
  JOIN pg_catalog.pg_class r ON r.relnamespace = n.oid AND r.relname = w.name AND r.relkind IN ('r', 'p')`;

/** A table's identity, or each leaf partition's: the partitions carry the rows, each its own identity. */
const IDENTITY_SQL = `
SELECT w.schema, w.name, ${IDENTITY_KEYS_SQL}
FROM ${MAPPED}
LEFT JOIN LATERAL (SELECT t.relid FROM pg_catalog.pg_partition_tree(r.oid) t WHERE t.isleaf) leaf ON true
JOIN pg_catalog.pg_class c ON c.oid = coalesce(leaf.relid, r.oid)`;

const COLUMNS_SQL = `
SELECT w.schema, w.name, a.attname::text AS column,
  pg_catalog.format_type(CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE a.atttypid END, NULL) AS type,
  CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END AS typmod
FROM ${MAPPED}
JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid`;

interface IdentityRow {
  schema: string;
  name: string;
  identity: 'd' | 'n' | 'f' | 'i';
  primary_key: string[] | null;
  identity_index: string[] | null;
}

interface ColumnRow {
  schema: string;
  name: string;
  column: string;
  type: string;
  typmod: number;
}

interface Entry {
  info: TableInfo;
  /** Position of the read that first showed the current identity. */
  since: bigint;
  /** The identity before it changed under a running worker, and the last read that showed it. */
  previous: { identity: ReplicaIdentity; until: bigint } | null;
}

/**
 * Replica identities and column types read from the database (`source.url`), for the mapped
 * tables. An event newer than the last read makes the next batch read again first, so a table
 * switched from FULL to DEFAULT is never trusted for a change made after the switch. Across a
 * switch seen while running, changes between the two reads get the weaker of the two identities.
 */
export class PostgresCatalog implements TableCatalog {
  private readonly log: Logger;
  private client: pg.Client | null = null;
  private readonly entries = new Map<string, Entry>();
  private readAtLsn = -1n;
  private readAtMs = 0;
  private reading: Promise<void> | null = null;
  private closed = false;
  private readonly warnedMissing = new Set<string>();
  /** The mapped tables as `schema.table`: looked up once per event. */
  private readonly mapped: ReadonlySet<string>;

  constructor(
    private readonly options: { url: string; tables: ReadonlyArray<readonly [string, string]>; logger: Logger; nowMs?: () => number },
  ) {
    this.log = options.logger.child({ component: 'debezium-catalog' });
    this.mapped = new Set(options.tables.map(([schema, table]) => tableKey(schema, table)));
  }

  async start(): Promise<void> {
    await this.readWithRetry(async () => undefined);
  }

  async prepare(events: readonly EventTable[], keepAlive: () => Promise<void>): Promise<void> {
    const now = this.now();
    const stale =
      now - this.readAtMs >= MAX_AGE_MS ||
      events.some((e) => {
        const key = tableKey(e.schema, e.table);
        if (!this.mapped.has(key)) return false;
        if (!this.entries.has(key)) return now - this.readAtMs >= MISSING_RECHECK_MS;
        return e.lsn === null || e.lsn > this.readAtLsn;
      });
    if (stale) await this.readWithRetry(keepAlive);
  }

  info(event: EventTable): TableInfo {
    const key = tableKey(event.schema, event.table);
    const entry = this.entries.get(key);
    if (entry === undefined) {
      if (this.mapped.has(key) && !this.warnedMissing.has(key)) {
        this.warnedMissing.add(key);
        this.log.warn(
          { table: key, hint: 'check that source.url is the database Debezium reads; it is looked for again when its changes arrive' },
          'mapped table not found in the database: old rows of its changes are read as their message key only',
        );
      }
      return { identity: { kind: 'message-key' } };
    }
    const previous = entry.previous;
    if (previous === null || (event.lsn !== null && event.lsn > entry.since)) return entry.info;
    if (event.lsn !== null && event.lsn <= previous.until) return { ...entry.info, identity: previous.identity };
    return { ...entry.info, identity: weaker(previous.identity, entry.info.identity) };
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = null;
    await client?.end().catch(() => undefined);
  }

  private now(): number {
    return this.options.nowMs?.() ?? Date.now();
  }

  /** One read at a time; callers that come while one runs wait for the next, which starts after them. */
  private async readWithRetry(keepAlive: () => Promise<void>): Promise<void> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
    for (;;) {
      if (this.closed) throw new SourceUnavailableError('the source is closing');
      const running = this.reading;
      if (running !== null) await running.catch(() => undefined);
      const attempt = (this.reading ??= this.read().finally(() => (this.reading = null)));
      try {
        return await attempt;
      } catch (err) {
        if (this.closed) throw err;
        const delayMs = backoff.next();
        this.log.warn({ err: toError(err), attempt: backoff.attempts, delayMs }, 'reading replica identities failed; retrying');
        await keepAlive();
        await sleep(delayMs);
      }
    }
  }

  private async read(): Promise<void> {
    const client = await this.connect();
    const names = [this.options.tables.map(([s]) => s), this.options.tables.map(([, t]) => t)];
    try {
      const lsn = parseLsn((await client.query<{ lsn: string }>(LSN_SQL)).rows[0]!.lsn);
      const identities = await client.query<IdentityRow>(IDENTITY_SQL, names);
      const columns = await client.query<ColumnRow>(COLUMNS_SQL, names);
      this.apply(lsn, identities.rows, columns.rows);
    } catch (err) {
      this.client = null;
      await client.end().catch(() => undefined);
      throw new SourceUnavailableError(`cannot read replica identities: ${toError(err).message}`, err);
    }
  }

  private async connect(): Promise<pg.Client> {
    if (this.client !== null) return this.client;
    const client = new pg.Client({
      connectionString: libpqConnectionString(this.options.url),
      application_name: 'cdc-invalidator catalog',
      statement_timeout: 10_000,
      connectionTimeoutMillis: 10_000,
    } as pg.ClientConfig);
    client.on('error', () => {
      if (this.client === client) this.client = null;
    });
    try {
      await client.connect();
    } catch (err) {
      await client.end().catch(() => undefined);
      throw new SourceUnavailableError(`cannot connect to read replica identities: ${toError(err).message}`, err);
    }
    this.client = client;
    return client;
  }

  private apply(lsn: bigint, identityRows: IdentityRow[], columnRows: ColumnRow[]): void {
    const identities = new Map<string, ReplicaIdentity>();
    for (const row of identityRows) {
      const key = tableKey(row.schema, row.name);
      const identity = identityOf(row);
      const known = identities.get(key);
      identities.set(key, known === undefined ? identity : weaker(known, identity));
    }
    const columns = new Map<string, Map<string, ColumnType>>();
    for (const row of columnRows) {
      const key = tableKey(row.schema, row.name);
      if (!columns.has(key)) columns.set(key, new Map());
      columns.get(key)!.set(row.column, columnType(row.type, row.typmod));
    }
    for (const [schema, table] of this.options.tables) {
      const key = tableKey(schema, table);
      const identity = identities.get(key);
      const entry = this.entries.get(key);
      if (identity === undefined) {
        // Said with the table's first PostgreSQL event (info): a mapped table of a MySQL or MariaDB
        // connector is in no PostgreSQL database, and needs none.
        this.entries.delete(key);
        continue;
      }
      this.warnedMissing.delete(key);
      const info: TableInfo = { identity, columns: columns.get(key) ?? new Map() };
      if (entry === undefined) {
        this.entries.set(key, { info, since: lsn, previous: null });
      } else if (sameIdentity(entry.info.identity, identity)) {
        entry.info = info;
      } else {
        this.log.info({ table: key, identity: describe(identity), was: describe(entry.info.identity) }, 'replica identity changed');
        this.entries.set(key, { info, since: lsn, previous: { identity: entry.info.identity, until: this.readAtLsn } });
      }
    }
    this.readAtLsn = lsn;
    this.readAtMs = this.now();
  }
}

function identityOf(row: IdentityRow): ReplicaIdentity {
  switch (row.identity) {
    case 'f':
      return { kind: 'full' };
    case 'd':
      return { kind: 'columns', columns: row.primary_key ?? [] };
    case 'i':
      return { kind: 'columns', columns: row.identity_index ?? [] };
    default:
      return { kind: 'columns', columns: [] };
  }
}

function sameIdentity(a: ReplicaIdentity, b: ReplicaIdentity): boolean {
  return describe(a) === describe(b);
}

function describe(identity: ReplicaIdentity): string {
  return identity.kind === 'columns' ? `columns(${identity.columns.join(',')})` : identity.kind;
}
