import pg from 'pg';
import { toError } from '../../errors.js';
import { libpqConnectionString } from '../../lib/pg/sql.js';
import type { Failure, LookupFacts, PostgresFacts, PublicationFacts, RoleFacts, ServerFacts, SlotFacts, TableFacts } from './facts.js';
import { tableFacts } from '../../lib/pg/catalog.js';

export interface PostgresTarget {
  url: string;
  slot: string;
  publication: string;
  tables: ReadonlyArray<readonly [string, string]>;
  lookups: ReadonlyArray<LookupQuery>;
  connectTimeoutMs?: number;
}

export interface LookupQuery {
  rule: string;
  alias: string;
  sql: string;
  params: number;
  timeoutMs: number;
}

/**
 * Reads everything `check` needs from the catalog, on one ordinary connection, then opens a
 * replication connection the way the worker does. Reads only: nothing is created or changed.
 * Every name reaches the server as a parameter; SQL-quoted forms for the fixes come from the
 * server's own quote_ident.
 */
export async function gatherPostgresFacts(target: PostgresTarget): Promise<PostgresFacts> {
  const timeoutMs = target.connectTimeoutMs ?? 10_000;
  const client = new pg.Client({
    connectionString: libpqConnectionString(target.url),
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: 30_000,
    application_name: 'cdc-invalidator check',
  });
  const where = describe(client);
  // A connection that drops mid-check surfaces as the failing query's error, not as a crash.
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    return { reachable: false, target: where, error: failure(err) };
  }
  try {
    const server = await serverFacts(client);
    const role = await roleFacts(client);
    const names = await client.query<{ publication: string }>('SELECT quote_ident($1) AS publication', [target.publication]);
    const slot = await slotFacts(client, target.slot, server);
    const publication = await publicationFacts(client, target.publication, server);
    const tables: TableFacts[] = [];
    for (const [schema, table] of target.tables) tables.push(await tableFacts(client, schema, table));
    const lookups: LookupFacts[] = [];
    for (const lookup of target.lookups) lookups.push(await planLookup(client, lookup));
    await client.end().catch(() => undefined);
    // Last, after the counts above, so that its own walsender is not counted as in use.
    const replication = await replicationProbe(target.url, timeoutMs);
    return {
      reachable: true,
      target: where,
      server,
      publicationSql: names.rows[0]!.publication,
      role,
      slot,
      publication,
      tables,
      replication,
      lookups,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** `user@host:port/database`, from the driver's parsed settings: the password is never part of it. */
function describe(client: pg.Client): string {
  return `${client.user ?? '?'}@${client.host}:${client.port}/${client.database ?? '?'}`;
}

async function serverFacts(client: pg.Client): Promise<ServerFacts> {
  const info = await client.query<{
    version: string;
    version_num: number;
    database: string;
    database_sql: string;
    in_recovery: boolean;
    slots: number;
    senders: number;
  }>(
    `SELECT current_setting('server_version') AS version,
            current_setting('server_version_num')::int AS version_num,
            current_database() AS database,
            quote_ident(current_database()) AS database_sql,
            pg_catalog.pg_is_in_recovery() AS in_recovery,
            (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int AS slots,
            (SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE backend_type = 'walsender')::int AS senders`,
  );
  const settings = await client.query<{ name: string; setting: string; pending_restart: boolean }>(
    'SELECT name, setting, pending_restart FROM pg_catalog.pg_settings WHERE name = ANY ($1)',
    [['wal_level', 'max_replication_slots', 'max_wal_senders', 'max_slot_wal_keep_size']],
  );
  const setting = (name: string) => settings.rows.find((r) => r.name === name);
  const row = info.rows[0]!;
  const keep = setting('max_slot_wal_keep_size');
  return {
    // Distributions append their own text: `15.8 (Debian 15.8-1.pgdg120+1)`.
    version: row.version.split(' ')[0]!,
    versionNum: row.version_num,
    database: row.database,
    databaseSql: row.database_sql,
    inRecovery: row.in_recovery,
    walLevel: setting('wal_level')?.setting ?? 'unknown',
    walLevelPendingRestart: setting('wal_level')?.pending_restart ?? false,
    maxReplicationSlots: Number(setting('max_replication_slots')?.setting ?? 0),
    maxWalSenders: Number(setting('max_wal_senders')?.setting ?? 0),
    maxSlotWalKeepSizeMb: keep === undefined ? null : Number(keep.setting),
    slotsInUse: row.slots,
    walSendersInUse: row.senders,
  };
}

async function roleFacts(client: pg.Client): Promise<RoleFacts> {
  const result = await client.query<{ name: string; sql: string; superuser: boolean; replication: boolean; create: boolean }>(
    `SELECT rolname AS name, quote_ident(rolname) AS sql, rolsuper AS superuser, rolreplication AS replication,
            has_database_privilege(current_database(), 'CREATE') AS create
       FROM pg_catalog.pg_roles WHERE rolname = current_user`,
  );
  const row = result.rows[0]!;
  return { name: row.name, sql: row.sql, superuser: row.superuser, replication: row.replication, createOnDatabase: row.create };
}

async function slotFacts(client: pg.Client, slot: string, server: ServerFacts): Promise<SlotFacts | null> {
  // wal_status appeared in PostgreSQL 13; pg_current_wal_lsn() fails on a standby.
  const walStatus = server.versionNum >= 130000 ? 's.wal_status' : 'NULL::text';
  const retained = server.inRecovery ? 'NULL::text' : 'pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), s.restart_lsn)::text';
  const result = await client.query<{
    slot_type: string;
    plugin: string | null;
    database: string | null;
    active: boolean;
    active_pid: number | null;
    application: string | null;
    client: string | null;
    retained: string | null;
    wal_status: string | null;
  }>(
    `SELECT s.slot_type, s.plugin, s.database, s.active, s.active_pid,
            a.application_name AS application, host(a.client_addr) AS client,
            ${retained} AS retained, ${walStatus} AS wal_status
       FROM pg_catalog.pg_replication_slots s
       LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = s.active_pid
      WHERE s.slot_name = $1`,
    [slot],
  );
  const row = result.rows[0];
  if (row === undefined) return null;
  return {
    name: slot,
    type: row.slot_type,
    plugin: row.plugin,
    database: row.database,
    active: row.active,
    activePid: row.active_pid,
    activeApplication: row.application === '' ? null : row.application,
    activeClient: row.client,
    retainedBytes: row.retained === null ? null : Number(row.retained),
    walStatus: row.wal_status,
  };
}

async function publicationFacts(client: pg.Client, name: string, server: ServerFacts): Promise<PublicationFacts | null> {
  const viaRoot = server.versionNum >= 130000 ? 'p.pubviaroot' : 'false';
  const found = await client.query<{
    sql: string;
    owner: string;
    owned: boolean;
    all_tables: boolean;
    via_root: boolean;
    insert: boolean;
    update: boolean;
    delete: boolean;
    truncate: boolean;
  }>(
    `SELECT quote_ident(p.pubname) AS sql, pg_catalog.pg_get_userbyid(p.pubowner) AS owner,
            pg_catalog.pg_has_role(p.pubowner, 'USAGE') AS owned, p.puballtables AS all_tables,
            ${viaRoot} AS via_root, p.pubinsert AS insert, p.pubupdate AS update, p.pubdelete AS delete,
            p.pubtruncate AS truncate
       FROM pg_catalog.pg_publication p WHERE p.pubname = $1`,
    [name],
  );
  const row = found.rows[0];
  if (row === undefined) return null;
  // Column lists and row filters appeared in PostgreSQL 15; before that every column is sent.
  const partial =
    server.versionNum >= 150000
      ? 'pt.attnames::text[] AS columns, pt.rowfilter'
      : `ARRAY(SELECT a.attname::text FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = format('%I.%I', pt.schemaname, pt.tablename)::regclass
                   AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
         NULL::text AS rowfilter`;
  const tables = await client.query<{ schema: string; table: string; columns: string[]; rowfilter: string | null }>(
    `SELECT pt.schemaname AS schema, pt.tablename AS table, ${partial}
       FROM pg_catalog.pg_publication_tables pt WHERE pt.pubname = $1`,
    [name],
  );
  return {
    name,
    sql: row.sql,
    owner: row.owner,
    owned: row.owned,
    allTables: row.all_tables,
    viaRoot: row.via_root,
    publishes: { insert: row.insert, update: row.update, delete: row.delete, truncate: row.truncate },
    tables: tables.rows.map((t) => ({ schema: t.schema, table: t.table, columns: t.columns, rowFilter: t.rowfilter })),
  };
}

/**
 * Plans a lookup query with EXPLAIN, as the worker's role, with every parameter NULL: that parses
 * it, resolves its tables and columns, infers its parameter types and checks the role's
 * privileges, without running it. The extended protocol refuses a second statement hidden in the
 * text, and the transaction is read-only and rolled back regardless.
 */
async function planLookup(client: pg.Client, lookup: LookupQuery): Promise<LookupFacts> {
  try {
    await client.query('BEGIN READ ONLY');
    await client.query(`SET LOCAL statement_timeout = ${Math.max(1, Math.floor(lookup.timeoutMs))}`);
    // queryMode is missing from @types/pg; without it a query with no parameters goes as a simple query.
    const explain = { text: `EXPLAIN ${lookup.sql}`, values: new Array(lookup.params).fill(null), queryMode: 'extended' };
    await client.query(explain as pg.QueryConfig);
    return { rule: lookup.rule, alias: lookup.alias, error: null };
  } catch (err) {
    return { rule: lookup.rule, alias: lookup.alias, error: failure(err) };
  } finally {
    await client.query('ROLLBACK');
  }
}

/** Opens a replication connection as the worker does: proves REPLICATION, pg_hba and a free walsender. */
async function replicationProbe(url: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; error: Failure }> {
  const client = new pg.Client({
    connectionString: libpqConnectionString(url),
    connectionTimeoutMillis: timeoutMs,
    replication: 'database',
    application_name: 'cdc-invalidator check',
  } as pg.ClientConfig);
  client.on('error', () => undefined);
  try {
    await client.connect();
    await client.query('IDENTIFY_SYSTEM');
    return { ok: true };
  } catch (err) {
    return { ok: false, error: failure(err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Normalises a driver error once: SQLSTATE or Node code, and a message that is never empty. */
export function failure(err: unknown): Failure {
  const e = toError(err);
  const code = (err as { code?: unknown } | null)?.code;
  let message = e.message.trim();
  // Node reports a host with several addresses, all refused, as an AggregateError without message.
  if (message === '' && err instanceof AggregateError && err.errors.length > 0) message = toError(err.errors[0]).message;
  if (message === '') message = e.name;
  const timedOut = /timeout|timed out/i.test(message);
  return { code: typeof code === 'string' ? code : timedOut ? 'TIMEOUT' : null, message };
}
