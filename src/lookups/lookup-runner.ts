import pg from 'pg';
import type { Value } from '../core/change.js';
import type { LookupRequest, LookupResult, LookupResults } from '../core/lookup.js';
import type { LookupRunner } from '../ports/lookups.js';
import { toError } from '../errors.js';
import { libpqConnectionString } from '../lib/pg/sql.js';
import type { Logger } from '../log.js';
import { Backoff, sleep } from '../lib/backoff.js';
import { arrayLiteral, splitBatchedRows, textRows } from './batched-sql.js';
import { isStatementError, planLookup, type LookupPlan } from './lookup-plan.js';

/** Lookup statements sent, learning a query's parameter types aside. */
export interface LookupStatementCounts {
  /** One parameter list each (retries included). */
  single: number;
  /** Many parameter lists each. */
  batched: number;
}

/**
 * Parameter lists in one combined statement at most. A batch of 5,000 changes rarely needs more
 * than this many of one lookup; beyond it the lists are split into statements that run side by
 * side on the pool, each short enough to stay well within the lookup's timeout.
 */
export const MAX_LISTS_PER_STATEMENT = 1_000;

const keepText = (text: string): string => text;

type TextResult = { fields: pg.FieldDef[]; rows: Value[][] };

/**
 * Lookups on a pool of ordinary connections. Parameters are always bound ($1, $2 ...), never
 * interpolated. Values come back in their PostgreSQL text form, like the replication stream's, so
 * keys rendered from a lookup match keys rendered from a row.
 *
 * The requests of one batch that share a query (and a timeout) run as one statement, which reads
 * one row of parameters per request (see batched-sql.ts): a round trip per query rather than one
 * per parameter list. What each request gets does not change: when the combined statement fails,
 * its requests run one by one, each with its own retries, so one bad value fails only its own.
 *
 * A lookup reads the database as it is now, which may be newer than the change being processed:
 * docs/configuration.md (Lookups) explains when that matters.
 */
export class PostgresLookupRunner implements LookupRunner {
  /**
   * One pool per distinct timeout: the server enforces it as statement_timeout and cancels the
   * query cleanly, where a client-side timer would leave the connection busy with it.
   */
  private readonly pools = new Map<number, pg.Pool>();
  /** By SQL: learnt once, or again after a failure that says the schema may have changed. */
  private readonly plans = new Map<string, Promise<LookupPlan | null>>();
  private readonly counts: LookupStatementCounts = { single: 0, batched: 0 };
  private readonly log: Logger;

  constructor(private readonly options: { url: string; maxConnections?: number; logger: Logger }) {
    this.log = options.logger.child({ component: 'lookups' });
  }

  get statements(): LookupStatementCounts {
    return { ...this.counts };
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
    // By SQL, then timeout: the SQL strings are the compiled lookups' own, whose hashes are kept.
    const groups = new Map<string, Map<number, LookupRequest[]>>();
    for (const request of requests) {
      let byTimeout = groups.get(request.sql);
      if (byTimeout === undefined) groups.set(request.sql, (byTimeout = new Map()));
      const group = byTimeout.get(request.timeoutMs);
      if (group === undefined) byTimeout.set(request.timeoutMs, [request]);
      else group.push(request);
    }
    await Promise.all([...groups.values()].flatMap((byTimeout) => [...byTimeout.values()].map((group) => this.runGroup(group, results))));
    return results;
  }

  private async runGroup(group: readonly LookupRequest[], results: Map<string, LookupResult>): Promise<void> {
    const plan = group.length === 1 ? null : await this.planFor(group[0]!.sql, group[0]!.timeoutMs);
    // A parameter count the server does not see is left to the server to report, request by request.
    if (plan === null || !plan.batched || group.some((r) => r.params.length !== plan.types.length)) {
      await this.runEach(group, results);
      return;
    }
    const chunks: LookupRequest[][] = [];
    for (let i = 0; i < group.length; i += MAX_LISTS_PER_STATEMENT) chunks.push(group.slice(i, i + MAX_LISTS_PER_STATEMENT));
    await Promise.all(chunks.map((chunk) => (chunk.length === 1 ? this.runEach(chunk, results) : this.runBatched(plan, chunk, results))));
  }

  private async runEach(requests: readonly LookupRequest[], results: Map<string, LookupResult>): Promise<void> {
    await Promise.all(
      requests.map(async (request) => {
        results.set(request.id, await this.runOne(request));
      }),
    );
  }

  private async runOne(request: LookupRequest): Promise<LookupResult> {
    const backoff = new Backoff({ initialMs: 50, maxMs: 2_000 });
    for (let attempt = 0; ; attempt++) {
      try {
        this.counts.single++;
        const result = await this.query(request.timeoutMs, request.sql, request.params);
        return { ok: true, rows: textRows(result.fields, result.rows) };
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

  /** One statement for all the requests; when it fails, each request on its own, as if it had not run. */
  private async runBatched(plan: LookupPlan & { batched: true }, requests: readonly LookupRequest[], results: Map<string, LookupResult>): Promise<void> {
    const params = plan.types.map((type, k) => arrayLiteral(requests.map((r) => r.params[k] ?? null), type.delimiter));
    let lists;
    try {
      this.counts.batched++;
      const result = await this.query(requests[0]!.timeoutMs, plan.sql, params);
      lists = splitBatchedRows(result.fields, result.rows, requests.length);
    } catch (err) {
      // A table or type changed under the query: learn it again before the next batch combines it.
      if (isStatementError(err)) this.plans.delete(requests[0]!.sql);
      this.log.debug({ err: toError(err), requests: requests.length }, 'combined lookup failed; running its requests one by one');
      await this.runEach(requests, results);
      return;
    }
    requests.forEach((request, i) => results.set(request.id, { ok: true, rows: lists[i]! }));
  }

  private async query(timeoutMs: number, text: string, values: readonly Value[]): Promise<TextResult> {
    const result = await this.poolFor(timeoutMs).query({ text, values: [...values], rowMode: 'array' });
    return { fields: result.fields, rows: result.rows as Value[][] };
  }

  private planFor(sql: string, timeoutMs: number): Promise<LookupPlan | null> {
    let plan = this.plans.get(sql);
    if (plan === undefined) {
      plan = this.learn(sql, timeoutMs);
      this.plans.set(sql, plan);
    }
    return plan;
  }

  /** The plan for a lookup's SQL; null, and asked again with the next batch, when it could not be had. */
  private async learn(sql: string, timeoutMs: number): Promise<LookupPlan | null> {
    let plan: LookupPlan;
    try {
      const client = await this.poolFor(timeoutMs).connect();
      try {
        plan = await planLookup(client, sql);
      } catch (err) {
        // The connection may still hold the probe statement: it is closed, not reused.
        client.release(toError(err));
        throw err;
      }
      client.release();
    } catch (err) {
      this.plans.delete(sql);
      this.log.debug({ err: toError(err), sql }, 'lookup not combined in this batch: its parameter types could not be learnt');
      return null;
    }
    if (plan.batched) this.log.debug({ sql }, 'lookup runs as one statement per batch');
    else this.log.warn({ sql, reason: plan.reason }, 'lookup cannot be combined: it runs once per parameter list');
    return plan;
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => undefined)));
  }
}
