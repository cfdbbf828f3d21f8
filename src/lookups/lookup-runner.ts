import pg from 'pg';
import type { Row } from '../core/change.js';
import type { LookupRequest, LookupResult, LookupResults } from '../core/lookup.js';
import { toError } from '../errors.js';
import { libpqConnectionString } from '../sources/postgres/sql.js';
import type { Logger } from '../log.js';
import { Backoff, sleep } from '../runtime/backoff.js';

/** Runs a batch's lookups; every request gets a result, a failure included. */
export interface LookupRunner {
  run(requests: readonly LookupRequest[]): Promise<LookupResults>;
  close(): Promise<void>;
}

const BOOL_OID = 16;
const keepText = (text: string): string => text;

/**
 * Lookups on a pool of ordinary connections. Parameters are always bound ($1, $2 ...), never
 * interpolated. Values come back in their PostgreSQL text form, like the replication stream's, so
 * keys rendered from a lookup match keys rendered from a row.
 *
 * A lookup reads the database as it is now, which may be newer than the change being processed:
 * README explains when that matters.
 */
export class PostgresLookupRunner implements LookupRunner {
  /**
   * One pool per distinct timeout: the server enforces it as statement_timeout and cancels the
   * query cleanly, where a client-side timer would leave the connection busy with it.
   */
  private readonly pools = new Map<number, pg.Pool>();
  private readonly log: Logger;

  constructor(private readonly options: { url: string; maxConnections?: number; logger: Logger }) {
    this.log = options.logger.child({ component: 'lookups' });
  }

  private poolFor(timeoutMs: number): pg.Pool {
    let pool = this.pools.get(timeoutMs);
    if (pool === undefined) {
      pool = new pg.Pool({
        connectionString: libpqConnectionString(this.options.url),
        max: this.options.maxConnections ?? 4,
        application_name: 'cdc-invalidator lookups',
        statement_timeout: timeoutMs,
        // Lookups only read: a mapping file cannot be a way to write to the database.
        options: '-c default_transaction_read_only=on',
        connectionTimeoutMillis: timeoutMs,
        types: { getTypeParser: () => keepText },
      } as pg.PoolConfig);
      // An idle pooled connection that drops is replaced on next use; nothing to do here.
      pool.on('error', () => undefined);
      this.pools.set(timeoutMs, pool);
    }
    return pool;
  }

  async run(requests: readonly LookupRequest[]): Promise<LookupResults> {
    const results = new Map<string, LookupResult>();
    await Promise.all(
      requests.map(async (request) => {
        results.set(request.id, await this.runOne(request));
      }),
    );
    return results;
  }

  private async runOne(request: LookupRequest): Promise<LookupResult> {
    const backoff = new Backoff({ initialMs: 50, maxMs: 2_000 });
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.poolFor(request.timeoutMs).query(request.sql, request.params);
        return { ok: true, rows: textRows(result) };
      } catch (err) {
        const e = toError(err);
        if (attempt >= request.retries) {
          this.log.warn({ err: e, attempts: attempt + 1 }, 'lookup failed');
          return { ok: false, message: e.message };
        }
        const delayMs = backoff.next();
        this.log.debug({ err: e, attempt: attempt + 1, delayMs }, 'lookup failed; retrying');
        await sleep(delayMs);
      }
    }
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}

function textRows(result: pg.QueryResult): Row[] {
  const booleans = result.fields.filter((f) => f.dataTypeID === BOOL_OID).map((f) => f.name);
  return result.rows.map((raw: Record<string, string | null>) => {
    const row: Record<string, string | null> = Object.create(null);
    for (const [column, value] of Object.entries(raw)) row[column] = value;
    for (const column of booleans) {
      const v = row[column];
      if (v === 't') row[column] = 'true';
      else if (v === 'f') row[column] = 'false';
    }
    return row;
  });
}
