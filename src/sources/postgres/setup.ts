import pg from 'pg';
import { tableKey, type CompileProblem, type RuleSet } from '../../core/rules.js';
import { describeGap, tableRequirements } from '../../core/table-requirements.js';
import { RulesMismatchError, SlotLostError, SourceSetupError, SourceUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../lib/backoff.js';
import { tableFacts } from '../../lib/pg/catalog.js';
import { classify } from '../../lib/pg/connection.js';
import { libpqConnectionString, qualifiedName, quoteIdent } from '../../lib/pg/sql.js';

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
  /** Tables (or partitions) set to REPLICA IDENTITY FULL at this start (source.replicaIdentity: full). */
  identitySetFull: string[];
  walSenderTimeoutMs: number;
}

export interface SetupOptions {
  slot: string;
  publication: string;
  /** The rules: which tables, and what each needs from its columns and old rows. */
  rules: RuleSet;
  /** check: refuse rules the tables cannot serve; full: set REPLICA IDENTITY FULL where they need it. */
  replicaIdentity: 'check' | 'full';
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
  const { mapped: mappedTables, altered } = await checkTables(client, options, log);
  await ensurePublication(client, options, log);
  await ensureSlot(client, options.slot, log);
  const timeout = await client.query<{ ms: string }>(
    `SELECT setting::bigint * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END AS ms
       FROM pg_catalog.pg_settings WHERE name = 'wal_sender_timeout'`,
  );
  return { mappedTables, identitySetFull: altered, walSenderTimeoutMs: Number(timeout.rows[0]?.ms ?? 60_000) };
}

/**
 * Every mapped table exists, has every column its rules name, and a replica identity that sends
 * what its rules render from old rows. This runs before the publication is touched: a table without
 * a usable identity must never be published (PostgreSQL would then refuse the application's own
 * UPDATE and DELETE on it). With `replicaIdentity: full` the worker sets REPLICA IDENTITY FULL
 * where the rules need it; otherwise such a rule is refused unless it declares a fallback.
 */
async function checkTables(
  client: pg.Client,
  options: SetupOptions,
  log: Logger,
): Promise<{ mapped: Map<number, MappedTable>; altered: string[] }> {
  const notFound: string[] = [];
  const problems: CompileProblem[] = [];
  const refusals: string[] = [];
  const alter: Array<{ table: string; targets: string[]; why: string }> = [];
  const mapped = new Map<number, MappedTable>();
  for (const [schema, table] of options.rules.tables) {
    const facts = await tableFacts(client, schema, table);
    const rel = facts.relation;
    if (rel === null || (rel.kind !== 'table' && rel.kind !== 'partitioned table')) {
      notFound.push(rel === null ? `${schema}.${table}` : `${schema}.${table} (a ${rel.kind}, not a table)`);
      continue;
    }
    mapped.set(rel.oid, { schema, table, primaryKey: rel.primaryKey });
    const rules = options.rules.byTable.get(tableKey(schema, table)) ?? [];
    const req = tableRequirements(rel, rules);
    problems.push(...req.missingColumns);
    if (req.identity.none) {
      const why = `table ${rel.sql} has no replica identity (${req.identity.label}): once published, PostgreSQL rejects every UPDATE and DELETE on it`;
      if (options.replicaIdentity === 'full') alter.push({ table: rel.sql, targets: req.identity.targets, why });
      else refusals.push(`${why}. Run ${req.fullSql} (or add a primary key), or set source.replicaIdentity: full`);
      continue;
    }
    const gaps = req.oldRowGaps;
    if (gaps.length === 0) continue;
    if (options.replicaIdentity === 'full') {
      alter.push({ table: rel.sql, targets: req.identity.targets, why: gaps.map((g) => `${describeGap(g, req.identity)} would not be invalidated`).join('; ') });
      continue;
    }
    for (const gap of gaps) {
      if (gap.rule.fallback === null) {
        refusals.push(
          `${describeGap(gap, req.identity)} could not be invalidated. Run ${req.fullSql} or set ` +
            'source.replicaIdentity: full (or give the rule a fallback the application reads)',
        );
      } else {
        log.warn(
          { rule: gap.rule.id, table: rel.sql, fix: req.fullSql },
          `${describeGap(gap, req.identity)} run the fallback instead; a fallback that only bumps a version key helps ` +
            'only applications that read that key (source.replicaIdentity: full lets the worker fix the table)',
        );
      }
    }
  }
  if (notFound.length > 0) {
    throw new SourceSetupError(
      `mapped table${notFound.length > 1 ? 's' : ''} not found in the database: ${notFound.join(', ')} ` +
        '(check the "table" of the rules, and the database in source.url)',
    );
  }
  if (problems.length > 0 || refusals.length > 0) throw new RulesMismatchError(problems, refusals);
  for (const { table, targets, why } of alter) await setReplicaIdentityFull(client, table, targets, why, log);
  return { mapped, altered: alter.flatMap((a) => a.targets) };
}

const ALTER_LOCK_TIMEOUT_MS = 2_000;

/** ALTER TABLE ... REPLICA IDENTITY FULL on each target (the partitions of a partitioned table). */
async function setReplicaIdentityFull(client: pg.Client, table: string, targets: string[], why: string, log: Logger): Promise<void> {
  // ALTER TABLE takes an ACCESS EXCLUSIVE lock, brief once granted; while it waits for a long
  // transaction, the application's queries would queue behind it. So it waits at most a moment,
  // and setup is retried (with backoff) rather than blocking the application.
  await client.query(`SET lock_timeout = '${ALTER_LOCK_TIMEOUT_MS}ms'`);
  try {
    for (const target of targets) await alterToFull(client, target, why);
  } finally {
    await client.query('RESET lock_timeout');
  }
  log.warn({ table, altered: targets, reason: why }, 'replica identity set to FULL (source.replicaIdentity: full)');
}

async function alterToFull(client: pg.Client, target: string, why: string): Promise<void> {
  try {
    // WAL written from here on carries whole old rows.
    await client.query(`ALTER TABLE ${target} REPLICA IDENTITY FULL`);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === '55P03') {
      throw new SourceUnavailableError(
        `could not lock ${target} within ${ALTER_LOCK_TIMEOUT_MS} ms to set REPLICA IDENTITY FULL (a long transaction holds it); retrying`,
        err,
      );
    }
    if (code !== '42501') throw err;
    throw new SourceSetupError(
      `source.replicaIdentity is "full" but the worker's role may not alter ${target} (it must own the table): ` +
        `run ALTER TABLE ${target} REPLICA IDENTITY FULL; as its owner. Needed because ${why}`,
      err,
    );
  }
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
    const list = options.rules.tables.map(([s, t]) => qualifiedName(s, t)).join(', ');
    try {
      // Changes of a partitioned table's partitions arrive under the table's own name, which is
      // the name the rules use.
      await client.query(`CREATE PUBLICATION ${pub} FOR TABLE ${list} WITH (publish_via_partition_root = true)`);
      log.info({ publication: options.publication, tables: options.rules.tables.length }, 'publication created');
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
  const missing = options.rules.tables.filter(([s, t]) => !have.has(`${s}.${t}`));
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
