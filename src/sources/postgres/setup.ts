import pg from 'pg';
import { SlotLostError, SourceSetupError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../runtime/backoff.js';
import { classify } from './pg-connection.js';
import { libpqConnectionString, qualifiedName, quoteIdent } from './sql.js';

/** A mapped table as setup found it. */
export interface MappedTable {
  /** The name the rules give it. */
  schema: string;
  table: string;
  primaryKey: string[];
}

export interface PreparedDatabase {
  /** The mapped tables by OID. */
  mappedTables: Map<number, MappedTable>;
  walSenderTimeoutMs: number;
}

export interface SetupOptions {
  slot: string;
  publication: string;
  /** Every mapped table, as [schema, table]. */
  tables: ReadonlyArray<readonly [string, string]>;
}

/**
 * Makes sure the database can stream what the mappings need: logical WAL, the mapped tables, a
 * publication that covers them and publishes every operation, and a pgoutput slot. The
 * publication is created before the slot: pgoutput looks publications up in the catalog as of
 * each change, and a slot older than its publication fails on the changes in between.
 */
export async function prepareDatabase(
  client: pg.Client,
  options: SetupOptions,
  log: Logger,
): Promise<PreparedDatabase> {
  const walLevel = (await client.query<{ wal_level: string }>('SHOW wal_level')).rows[0]?.wal_level;
  if (walLevel !== 'logical') {
    throw new SourceSetupError(
      `wal_level is "${walLevel}", logical replication needs "logical": ` +
        'run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL',
    );
  }
  const mappedTables = await checkTables(client, options.tables);
  await ensurePublication(client, options, log);
  await ensureSlot(client, options.slot, log);
  const timeout = await client.query<{ ms: string }>(
    `SELECT setting::bigint * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END AS ms
       FROM pg_catalog.pg_settings WHERE name = 'wal_sender_timeout'`,
  );
  return { mappedTables, walSenderTimeoutMs: Number(timeout.rows[0]?.ms ?? 60_000) };
}

/** Checks every mapped table exists; returns each one's OID, name and primary key columns. */
async function checkTables(client: pg.Client, tables: SetupOptions['tables']): Promise<Map<number, MappedTable>> {
  const missing: string[] = [];
  const mapped = new Map<number, MappedTable>();
  for (const [schema, table] of tables) {
    const found = await client.query<{ oid: number; pk: string[] | null }>(
      `SELECT c.oid::int8::float8 AS oid, (SELECT array_agg(a.attname::text ORDER BY a.attnum)
                 FROM pg_catalog.pg_index i
                 JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indrelid = c.oid AND i.indisprimary) AS pk
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
      [schema, table],
    );
    const row = found.rows[0];
    if (row === undefined) missing.push(`${schema}.${table}`);
    else mapped.set(Number(row.oid), { schema, table, primaryKey: row.pk ?? [] });
  }
  if (missing.length > 0) {
    throw new SourceSetupError(
      `mapped table${missing.length > 1 ? 's' : ''} not found in the database: ${missing.join(', ')} ` +
        '(check the "table" of the rules, and the database in source.url)',
    );
  }
  return mapped;
}

async function ensurePublication(client: pg.Client, options: SetupOptions, log: Logger): Promise<void> {
  const pub = quoteIdent(options.publication);
  const existing = await client.query<{
    puballtables: boolean;
    pubinsert: boolean;
    pubupdate: boolean;
    pubdelete: boolean;
    pubtruncate: boolean;
  }>(
    'SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_catalog.pg_publication WHERE pubname = $1',
    [options.publication],
  );
  const row = existing.rows[0];
  if (row === undefined) {
    const list = options.tables.map(([s, t]) => qualifiedName(s, t)).join(', ');
    try {
      // Changes of a partitioned table's partitions arrive under the table's own name, which is
      // the name the rules use.
      await client.query(`CREATE PUBLICATION ${pub} FOR TABLE ${list} WITH (publish_via_partition_root = true)`);
      log.info({ publication: options.publication, tables: options.tables.length }, 'publication created');
    } catch (err) {
      // Another worker created it at the same moment: fine, it covers the same tables.
      if ((err as { code?: string }).code !== '42710') throw err;
    }
    return;
  }
  const notPublished = (['insert', 'update', 'delete', 'truncate'] as const).filter(
    (op) => !row[`pub${op}`],
  );
  if (notPublished.length > 0) {
    throw new SourceSetupError(
      `publication "${options.publication}" does not publish ${notPublished.join(', ')}: those changes would ` +
        `never be invalidated. Run ALTER PUBLICATION ${pub} SET (publish = 'insert, update, delete, truncate');`,
    );
  }
  if (row.puballtables) return;
  const covered = await client.query<{ schemaname: string; tablename: string }>(
    'SELECT schemaname, tablename FROM pg_catalog.pg_publication_tables WHERE pubname = $1',
    [options.publication],
  );
  const have = new Set(covered.rows.map((r) => `${r.schemaname}.${r.tablename}`));
  const missing = options.tables.filter(([s, t]) => !have.has(`${s}.${t}`));
  if (missing.length === 0) return;
  // A mapping for a new table must work without a manual step; the change is logged.
  await client.query(
    `ALTER PUBLICATION ${pub} ADD TABLE ${missing.map(([s, t]) => qualifiedName(s, t)).join(', ')}`,
  );
  log.warn(
    { publication: options.publication, added: missing.map(([s, t]) => `${s}.${t}`) },
    'publication did not cover every mapped table; tables added',
  );
}

async function ensureSlot(client: pg.Client, slot: string, log: Logger): Promise<void> {
  const found = await client.query<{ plugin: string | null; slot_type: string; database: string | null; wal_status: string | null }>(
    `SELECT plugin, slot_type, database, wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = found.rows[0];
  if (row === undefined) {
    try {
      await client.query(`SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
      log.info('replication slot created');
    } catch (err) {
      if ((err as { code?: string }).code !== '42710') throw err;
    }
    return;
  }
  if (row.slot_type !== 'logical' || row.plugin !== 'pgoutput') {
    throw new SourceSetupError(
      `replication slot "${slot}" exists but is a ${row.slot_type} slot with plugin "${row.plugin}", ` +
        'not a logical pgoutput slot: choose another source.slot, or drop it with ' +
        `SELECT pg_drop_replication_slot('${slot}');`,
    );
  }
  const db = (await client.query<{ db: string }>('SELECT current_database() AS db')).rows[0]?.db;
  if (row.database !== db) {
    throw new SourceSetupError(
      `replication slot "${slot}" belongs to database "${row.database}", not "${db}": choose another source.slot`,
    );
  }
  if (row.wal_status === 'lost') throw slotLost(slot);
}

export function slotLost(slot: string): SlotLostError {
  return new SlotLostError(
    `replication slot "${slot}" has lost WAL it needed (max_slot_wal_keep_size was exceeded while the worker ` +
      'was behind or away): changes were skipped and caches may be stale. Either set source.slotLost: recover ' +
      "(runs every rule's fallback, then recreates the slot), or flush the affected cache namespaces yourself " +
      `and drop the slot (SELECT pg_drop_replication_slot('${slot}');) so that it is recreated at start.`,
  );
}

/**
 * Replaces a lost slot with a new one. The new slot starts at a consistent point taken now; what
 * changed before it is covered by the recovery actions the caller runs after this.
 */
export async function recreateSlot(client: pg.Client, slot: string, log: Logger): Promise<void> {
  await client.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [slot]);
  await client.query(`SELECT pg_catalog.pg_create_logical_replication_slot($1, 'pgoutput')`, [slot]);
  log.warn('lost replication slot dropped and created anew');
}

/**
 * prepareDatabase on a connection of its own, retried with backoff while the database cannot be
 * reached (until `signal` aborts); a misconfiguration is thrown. A lost slot goes to `onSlotLost`
 * when given (which recreates it), then setup runs again.
 */
export async function prepareWithRetry(options: {
  url: string;
  setup: SetupOptions;
  log: Logger;
  signal: AbortSignal;
  onSlotLost?: (client: pg.Client, lost: SlotLostError) => Promise<void>;
}): Promise<PreparedDatabase> {
  const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
  for (;;) {
    const client = new pg.Client({ connectionString: libpqConnectionString(options.url) });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await prepareDatabase(client, options.setup, options.log);
    } catch (err) {
      const e = classify(err);
      if (e instanceof SlotLostError && options.onSlotLost !== undefined) {
        await options.onSlotLost(client, e);
        continue;
      }
      if (!e.retryable || options.signal.aborted) throw e;
      const delayMs = backoff.next();
      options.log.warn({ err: e, attempt: backoff.attempts, delayMs }, 'database not reachable; retrying setup');
      await sleep(delayMs, options.signal);
      if (options.signal.aborted) throw e;
    } finally {
      await client.end().catch(() => undefined);
    }
  }
}
