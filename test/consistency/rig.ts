// One run of a consistency scenario: its own database (hot rows in public.items, mapped by `item:{id}`),
// Redis key prefix, slot and publication, the built worker (`node dist/cli.js run`) with the run's
// `consistency:` settings, and the checks after quiescence.
import { performance } from 'node:perf_hooks';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import type { PostgresStandby } from '../harness/postgres-standby.js';
import type { PostgresServer } from '../harness/postgres.js';
import type { RedisServer } from '../harness/redis.js';
import { uniqueName } from '../harness/services.js';
import { AbortWaitError, waitFor } from '../harness/wait-for.js';
import type { ClientKind } from './load.js';

export interface RigOptions {
  primary: PostgresServer;
  redis: RedisServer;
  /** Hot rows per kind of client: 1..n are read through textbook cache-aside, n+1..2n through the lease client. */
  hotKeys: number;
  /** The worker's `consistency:` block (YAML, starting with "consistency:"), or none; given the run's database. */
  consistency?: string | ((database: string) => string);
}

/** The worker exited before it was streaming (a refused config exits 2). */
export class WorkerExitedError extends Error {
  override readonly name = 'WorkerExitedError';
  constructor(
    readonly code: number | string,
    readonly output: string,
  ) {
    super(`the worker exited with ${code} before streaming:\n${output.trim().split('\n').slice(-10).join('\n')}`);
  }
}

const RULES = `rules:
  - table: public.items
    invalidate: ["item:{id}"]
  - table: public.sentinel
    invalidate: ["sentinel:{id}"]
`;

export class ConsistencyRig {
  readonly database: string;
  readonly prefix: string;
  readonly slot: string;
  readonly ids: Record<ClientKind, number[]>;
  readonly redis: Redis;
  /**
   * When the worker's last invalidation of each key (bare: `item:6`) reached this process
   * (performance.now()), from its notifications (redis.notifyChannel).
   */
  readonly invalidatedAt = new Map<string, number>();
  readonly #notifyChannel = uniqueName('invalidated');
  readonly #subscriber: Redis;
  readonly #primary: PostgresServer;
  readonly #dir: string;
  readonly #configPath: string;
  #worker: WorkerProcess | undefined;
  #sentinel = 0;

  private constructor(options: RigOptions, database: string) {
    this.#primary = options.primary;
    this.database = database;
    this.prefix = `${uniqueName('k')}:`;
    this.slot = uniqueName('slot');
    const n = options.hotKeys;
    this.ids = {
      'cache-aside': Array.from({ length: n }, (_, i) => 1 + i),
      'lease client': Array.from({ length: n }, (_, i) => n + 1 + i),
    };
    this.redis = new Redis(options.redis.url());
    this.#subscriber = new Redis(options.redis.url());
    this.#subscriber.on('message', (_channel: string, message: string) => {
      const at = performance.now();
      for (const key of (JSON.parse(message) as { keys: string[] }).keys) this.invalidatedAt.set(key.slice(this.prefix.length), at);
    });
    this.#dir = mkdtempSync(join(tmpdir(), 'cdc-consistency-'));
    mkdirSync(join(this.#dir, 'mappings'));
    writeFileSync(join(this.#dir, 'mappings', 'rules.yaml'), RULES);
    this.#configPath = join(this.#dir, 'cdc-invalidator.yaml');
    const consistency = typeof options.consistency === 'function' ? options.consistency(database) : options.consistency;
    writeFileSync(
      this.#configPath,
      `source:\n  kind: postgres\n  url: "${this.url}"\n  slot: ${this.slot}\n  publication: ${uniqueName('pub')}\n  heartbeatSeconds: 1\n` +
        `redis:\n  url: "${options.redis.url()}"\n  keyPrefix: "${this.prefix}"\n  notifyChannel: ${this.#notifyChannel}\n` +
        `mappings: ./mappings\nhttp:\n  port: 0\n${consistency ?? ''}`,
    );
  }

  static async create(options: RigOptions): Promise<ConsistencyRig> {
    const database = uniqueName('cons');
    await options.primary.createDatabase(database);
    await options.primary.query(
      `CREATE TABLE public.items (id int PRIMARY KEY, v int NOT NULL);
       INSERT INTO public.items SELECT g, 0 FROM generate_series(1, ${2 * options.hotKeys}) g;
       CREATE TABLE public.sentinel (id int PRIMARY KEY);`,
      [],
      database,
    );
    const rig = new ConsistencyRig(options, database);
    await rig.#subscriber.subscribe(rig.#notifyChannel);
    return rig;
  }

  get url(): string {
    return this.#primary.url(this.database);
  }

  async sql<R extends Record<string, unknown> = Record<string, unknown>>(text: string, params: unknown[] = []): Promise<R[]> {
    return await this.#primary.query<R>(text, params, this.database);
  }

  /** Spawns the built worker and waits until it streams from its slot; WorkerExitedError if it exits first. */
  async startWorker(): Promise<void> {
    const worker = spawnCli(['run', '--config', this.#configPath]);
    this.#worker = worker;
    let exitCode: number | string | undefined;
    void worker.exited.then((code) => (exitCode = code));
    await waitFor(
      async () => {
        if (exitCode !== undefined) throw new AbortWaitError('the worker exited');
        const [row] = await this.sql<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
        return row?.active === true;
      },
      { timeoutMs: 30_000, message: 'the worker to stream from its slot' },
    ).catch((err: unknown) => {
      throw exitCode !== undefined ? new WorkerExitedError(exitCode, worker.output()) : err;
    });
  }

  /** Everything the worker wrote so far. */
  workerOutput(): string {
    return this.#worker?.output() ?? '';
  }

  /**
   * Waits until the worker has applied and confirmed everything committed so far (its slot's
   * confirmed_flush_lsn reached the primary's pg_current_wal_lsn(); the worker's 1 s heartbeat moves the
   * slot past WAL that has nothing to invalidate) and each standby has replayed it. Returns the target.
   */
  async quiesce(standbys: readonly PostgresStandby[] = []): Promise<string> {
    const [{ lsn: target } = { lsn: '' }] = await this.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    await waitFor(
      async () => {
        const [row] = await this.sql<{ ok: boolean | null }>(
          'SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $2',
          [target, this.slot],
        );
        return row?.ok === true;
      },
      { timeoutMs: 30_000, intervalMs: 20, message: `the slot's confirmed_flush_lsn to reach ${target}` },
    );
    for (const standby of standbys) await standby.waitForReplay(target);
    return target;
  }

  /**
   * With `consistency.replicas`, a commit's keys are invalidated once when the worker applies it and again
   * once every replica has replayed it. Waits for that second pass over a commit made now, which comes
   * after the second pass over every earlier commit: a sentinel key is set, the sentinel row inserted, and
   * once the first pass has deleted the key it is set again, for the second pass to delete.
   */
  async waitForReplicaPass(timeoutMs = 30_000): Promise<void> {
    const id = ++this.#sentinel;
    const key = `${this.prefix}sentinel:${id}`;
    await this.redis.set(key, 'cached');
    await this.sql('INSERT INTO public.sentinel (id) VALUES ($1)', [id]);
    await waitFor(async () => (await this.redis.exists(key)) === 0, { timeoutMs, intervalMs: 2, message: 'the first invalidation of the sentinel' });
    // A replica replays the commit no sooner than its apply delay after it: far later than this SET.
    await this.redis.set(key, 'cached');
    await waitFor(async () => (await this.redis.exists(key)) === 0, {
      timeoutMs,
      intervalMs: 10,
      message: 'the second invalidation of the sentinel, after the replicas replayed it',
    });
  }

  /** Hot keys whose cached value differs from the primary's row now (a missing key is not stale). */
  async staleKeys(kind: ClientKind): Promise<Array<{ id: number; text: string }>> {
    const ids = this.ids[kind];
    const rows = await this.sql<{ id: number; v: number }>('SELECT id, v FROM public.items WHERE id = ANY($1)', [ids]);
    const cached = await this.redis.mget(...rows.map((r) => `${this.prefix}item:${r.id}`));
    const stale: Array<{ id: number; text: string }> = [];
    rows.forEach((row, i) => {
      const value = cached[i];
      if (value !== null && value !== undefined && JSON.parse(value) !== row.v) stale.push({ id: row.id, text: `item:${row.id} cached ${value}, primary ${row.v}` });
    });
    return stale;
  }

  /** Stops the worker (SIGTERM, SIGKILL after 30 s), drops its slot, closes connections and files. */
  async close(): Promise<void> {
    const worker = this.#worker;
    if (worker !== undefined && worker.child.exitCode === null && worker.child.signalCode === null) {
      worker.child.kill('SIGTERM');
      const timer = setTimeout(() => worker.child.kill('SIGKILL'), 30_000);
      await worker.exited;
      clearTimeout(timer);
    }
    this.redis.disconnect();
    this.#subscriber.disconnect();
    // An abandoned slot holds WAL for ever.
    await waitFor(
      async () => {
        const rows = await this.sql<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
        if (rows.length === 0) return true;
        if (rows[0]!.active) return false;
        await this.sql('SELECT pg_drop_replication_slot($1)', [this.slot]);
        return true;
      },
      { timeoutMs: 30_000, message: `slot ${this.slot} to be dropped` },
    ).catch(() => undefined);
    rmSync(this.#dir, { recursive: true, force: true });
  }
}
