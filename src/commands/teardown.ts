import pg from 'pg';
import { libpqConnectionString, quoteIdent } from '../lib/pg/sql.js';

export interface TeardownTarget {
  url: string;
  slot: string;
  publication: string;
  /** Drop; without it, only say what would be dropped. */
  yes: boolean;
}

/**
 * Removes what `run` created in the database: the replication slot (which otherwise keeps WAL on the
 * server for ever once no worker reads it) and the publication. Refuses while a worker streams the
 * slot. What it leaves is said: REPLICA IDENTITY FULL set by `source.replicaIdentity: full`, and the
 * worker's keys in Redis.
 */
export async function teardown(target: TeardownTarget): Promise<{ text: string; exitCode: 0 | 1 }> {
  const client = new pg.Client({ connectionString: libpqConnectionString(target.url), application_name: 'cdc-invalidator teardown' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    return { text: `cannot connect to the database: ${err instanceof Error ? err.message : String(err)}\n`, exitCode: 1 };
  }
  try {
    const database = (await client.query<{ db: string }>('SELECT pg_catalog.current_database() AS db')).rows[0]!.db;
    const slot = (
      await client.query<{ active_pid: number | null; database: string | null; retained: string | null }>(
        `SELECT active_pid, database, pg_catalog.pg_size_pretty(pg_catalog.pg_current_wal_lsn() - restart_lsn) AS retained
           FROM pg_catalog.pg_replication_slots WHERE slot_name = $1`,
        [target.slot],
      )
    ).rows[0];
    const publication = (await client.query('SELECT 1 FROM pg_catalog.pg_publication WHERE pubname = $1', [target.publication])).rowCount === 1;
    const lines: string[] = [];
    if (slot === undefined && !publication) {
      return { text: `nothing to drop: no slot "${target.slot}" and no publication "${target.publication}" in database "${database}"\n`, exitCode: 0 };
    }
    if (slot !== undefined && slot.active_pid !== null) {
      return {
        text: `slot "${target.slot}" is being streamed (walsender pid ${slot.active_pid}): stop the worker first, then run teardown again\n`,
        exitCode: 1,
      };
    }
    if (slot !== undefined && slot.database !== database) {
      return {
        text: `slot "${target.slot}" belongs to database "${slot.database}", not "${database}": point source.url at that database\n`,
        exitCode: 1,
      };
    }
    if (!target.yes) {
      if (slot !== undefined) lines.push(`would drop replication slot "${target.slot}" (it keeps ${slot.retained ?? 'no'} of WAL on the server)`);
      if (publication) lines.push(`would drop publication "${target.publication}"`);
      lines.push('run again with --yes to drop them');
      return { text: `${lines.join('\n')}\n`, exitCode: 0 };
    }
    if (slot !== undefined) {
      await client.query('SELECT pg_catalog.pg_drop_replication_slot($1)', [target.slot]);
      lines.push(`dropped replication slot "${target.slot}"`);
    }
    if (publication) {
      await client.query(`DROP PUBLICATION IF EXISTS ${quoteIdent(target.publication)}`);
      lines.push(`dropped publication "${target.publication}"`);
    }
    lines.push(
      'left as they are: tables set to REPLICA IDENTITY FULL by source.replicaIdentity: full, and the worker\'s keys in Redis ' +
        '(<keyPrefix>cdc-invalidator:applied, <keyPrefix>cdc-invalidator:dead-letters)',
    );
    return { text: `${lines.join('\n')}\n`, exitCode: 0 };
  } catch (err) {
    return { text: `teardown failed: ${err instanceof Error ? err.message : String(err)}\n`, exitCode: 1 };
  } finally {
    await client.end().catch(() => undefined);
  }
}
