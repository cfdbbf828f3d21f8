// The cache-aside load of the consistency scenarios: writers updating hot rows at a fixed rate (each
// update sets the row's version `v` to the next number), and readers that read those rows through the
// cache, either textbook cache-aside (GET; on a miss SELECT from the read target, then SET with a long
// TTL) or the project's lease client. Every value a reader gets back is recorded, so that for each write
// the time until readers first saw it (or a later version) can be told.
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Redis } from 'ioredis';
import { createCache, type Cache } from '../../src/client/index.js';

/** TTL of every cached value: longer than any scenario, so only the worker removes entries. */
export const CACHE_TTL_SECONDS = 3600;

export type ClientKind = 'cache-aside' | 'lease client';

export interface Write {
  id: number;
  /** The version the update gave the row (row versions grow by one per committed update). */
  v: number;
  /** performance.now() when the update was sent. */
  sentAt: number;
  /** performance.now() when the commit returned to the writer. */
  committedAt: number;
}

/** The application_name of the writers' sessions, to find them in pg_stat_activity. */
export const WRITER_APPLICATION_NAME = 'consistency-writer';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Writers, each owning its own rows (so no writer waits for another's row lock, and a held commit holds
 * exactly one writer), each updating one of its rows every `intervalMs`. After a commit that was held
 * (a paused synchronous standby) a writer carries on at its rate rather than catching up in a burst.
 */
export class Writers {
  readonly writes: Write[] = [];
  #stopping = false;
  #stopped: Promise<void> | undefined;
  readonly #loops: Promise<void>[];
  readonly #clients: pg.Client[] = [];

  private constructor(url: string, owned: number[][], intervalMs: number) {
    this.#loops = owned.map(async (ids) => {
      const client = new pg.Client({ connectionString: url, application_name: WRITER_APPLICATION_NAME });
      this.#clients.push(client);
      await client.connect();
      let next = performance.now();
      while (!this.#stopping) {
        const id = ids[Math.floor(Math.random() * ids.length)]!;
        const sentAt = performance.now();
        const { rows } = await client.query<{ v: number }>('UPDATE public.items SET v = v + 1 WHERE id = $1 RETURNING v', [id]);
        this.writes.push({ id, v: rows[0]!.v, sentAt, committedAt: performance.now() });
        next += intervalMs;
        const now = performance.now();
        if (next < now) next = now;
        await sleep(next - now);
      }
    });
  }

  static start(url: string, owned: number[][], intervalMs: number): Writers {
    return new Writers(url, owned, intervalMs);
  }

  get count(): number {
    return this.#loops.length;
  }

  /** Asks every writer to stop after its current update (which may be a held commit). */
  requestStop(): void {
    this.#stopping = true;
  }

  /** Stops the writers and waits until every update they started has returned. Safe to call twice. */
  async stop(): Promise<void> {
    this.requestStop();
    this.#stopped ??= (async () => {
      try {
        await Promise.all(this.#loops);
      } finally {
        await Promise.all(this.#clients.map((c) => c.end().catch(() => undefined)));
      }
    })();
    await this.#stopped;
  }
}

/** The highest version any reader has been given for each row, and when each higher one first came back. */
export class Observations {
  readonly #seen = new Map<number, Array<{ at: number; v: number }>>();

  record(id: number, v: number, at: number): void {
    let list = this.#seen.get(id);
    if (list === undefined) this.#seen.set(id, (list = []));
    if (list.length === 0 || v > list.at(-1)!.v) list.push({ at, v });
  }

  /**
   * For each write, milliseconds from its commit returning to a reader first being given that version or a
   * later one (0 when a reader had it before the writer's commit returned), or Infinity when none was.
   */
  windowsMs(writes: readonly Write[]): number[] {
    const byId = new Map<number, Write[]>();
    for (const w of writes) {
      let list = byId.get(w.id);
      if (list === undefined) byId.set(w.id, (list = []));
      list.push(w);
    }
    const out: number[] = [];
    for (const [id, list] of byId) {
      list.sort((a, b) => a.v - b.v);
      const seen = this.#seen.get(id) ?? [];
      let i = 0;
      for (const w of list) {
        while (i < seen.length && seen[i]!.v < w.v) i++;
        out.push(i < seen.length ? Math.max(0, seen[i]!.at - w.committedAt) : Infinity);
      }
    }
    return out;
  }
}

export interface ReadersOptions {
  redisUrl: string;
  /** The worker's key prefix; keys are `<prefix>item:<id>`. */
  prefix: string;
  /** Where misses read the row: the primary or a replica. */
  readUrl: string;
  /** Rows read through each kind of client. */
  ids: Record<ClientKind, number[]>;
  /** Readers per kind of client. */
  readersPerKind: number;
  /** Pause between two reads of one reader. */
  pauseMs: number;
}

export interface ReaderCounts {
  reads: number;
  /** Misses that read the row and stored it. */
  fills: number;
}

/** Readers hammering the hot keys until stopped, through both kinds of client side by side. */
export class Readers {
  readonly observations = new Observations();
  readonly #counts: Record<ClientKind, ReaderCounts> = { 'cache-aside': { reads: 0, fills: 0 }, 'lease client': { reads: 0, fills: 0 } };
  /**
   * Per row read through textbook cache-aside, the fill whose SET completed last (what the key holds):
   * when its SELECT started and its SET completed (performance.now()).
   */
  readonly lastFill = new Map<number, { selectedAt: number; setAt: number }>();
  /** Per row, the latest start of a read that has returned. */
  readonly #lastReadStart = new Map<number, number>();
  readonly #pool: pg.Pool;
  readonly #redis: Redis[] = [];
  readonly #caches: Cache[] = [];
  readonly #loops: Promise<void>[] = [];
  #stopping = false;
  #stopped: Promise<void> | undefined;

  constructor(private readonly options: ReadersOptions) {
    this.#pool = new pg.Pool({ connectionString: options.readUrl, max: 2 * options.readersPerKind });
    const load = async (id: number): Promise<number> => {
      const { rows } = await this.#pool.query<{ v: number }>('SELECT v FROM public.items WHERE id = $1', [id]);
      return rows[0]!.v;
    };
    for (let i = 0; i < options.readersPerKind; i++) {
      const plainRedis = this.#connect();
      this.#loop('cache-aside', async (id) => {
        const key = `${options.prefix}item:${id}`;
        const cached = await plainRedis.get(key);
        if (cached !== null) return JSON.parse(cached) as number;
        const selectedAt = performance.now();
        const v = await load(id);
        await plainRedis.set(key, JSON.stringify(v), 'EX', CACHE_TTL_SECONDS);
        const setAt = performance.now();
        if (setAt > (this.lastFill.get(id)?.setAt ?? -Infinity)) this.lastFill.set(id, { selectedAt, setAt });
        this.#counts['cache-aside'].fills++;
        return v;
      });
      const cache = createCache(this.#connect(), {
        keyPrefix: options.prefix,
        ttlSeconds: CACHE_TTL_SECONDS,
        ttlJitter: 0,
        stampede: { waitMs: 2, maxWaitMs: 2000 },
      });
      this.#caches.push(cache);
      this.#loop('lease client', async (id) => await cache.get(`item:${id}`, () => load(id)));
    }
  }

  counts(kind: ClientKind): ReaderCounts {
    const counts = { ...this.#counts[kind] };
    if (kind === 'lease client') counts.fills = this.#caches.reduce((n, c) => n + c.stats.fills, 0);
    return counts;
  }

  /** True once every hot row has been read by a read that started at or after `since` (performance.now()). */
  allReadSince(since: number): boolean {
    return Object.values(this.options.ids).every((ids) => ids.every((id) => (this.#lastReadStart.get(id) ?? -Infinity) >= since));
  }

  /** Stops reading; returns once every read in flight (and its fill) has finished. Safe to call twice. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#stopped ??= (async () => {
      try {
        await Promise.all(this.#loops);
      } finally {
        for (const cache of this.#caches) await cache.close();
        for (const r of this.#redis) r.disconnect();
        await this.#pool.end();
      }
    })();
    await this.#stopped;
  }

  #connect(): Redis {
    const r = new Redis(this.options.redisUrl);
    this.#redis.push(r);
    return r;
  }

  /** Reads that failed, and the last failure's message. */
  readErrors = 0;
  lastReadError: string | null = null;

  #loop(kind: ClientKind, read: (id: number) => Promise<number>): void {
    const ids = this.options.ids[kind];
    this.#loops.push(
      (async () => {
        while (!this.#stopping) {
          const id = ids[Math.floor(Math.random() * ids.length)]!;
          const startedAt = performance.now();
          let v: number;
          try {
            v = await read(id);
          } catch (err) {
            // A failed read (the database restarting, say) is counted, never left unhandled.
            this.readErrors++;
            this.lastReadError = err instanceof Error ? err.message : String(err);
            await sleep(10);
            continue;
          }
          this.observations.record(id, v, performance.now());
          this.#counts[kind].reads++;
          if ((this.#lastReadStart.get(id) ?? -Infinity) < startedAt) this.#lastReadStart.set(id, startedAt);
          await sleep(this.options.pauseMs);
        }
      })(),
    );
  }
}

/** Nearest-rank percentile (p in 0..1) of the values; Infinity stays Infinity. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}
