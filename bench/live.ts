// Live latency at a fixed commit rate: pgbench commits single-row UPDATEs at a steady rate
// (-R, Poisson arrivals), each stamping its row with the time it ran (`t`, µs since the epoch), and
// two consumers that have caught up turn each commit into its effect, at the same time:
//   floor:  the project's decoder with nothing behind it (bench/consumer-main.js live) notes when
//           each change arrives: the least any consumer of that WAL could achieve.
//   worker: `node dist/cli.js run` deletes item:{id}; a keyspace subscriber notes when each key is
//           deleted.
// Latency is from `t` to that moment, per commit. Each consumer has a slot of its own, created just
// before the run; each rate has its own range of row ids, so no run sees another's commits.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type pg from 'pg';
import type { OrphanGuard } from '../test/harness/orphan-guard.js';
import { nowUs, round, summariseMs, type LatencySummary } from './percentiles.js';
import { spawnWorker } from './worker-process.js';

export interface LiveSetup {
  db: pg.Client;
  /** The bench database's URL. */
  url: string;
  redis: Redis;
  redisUrl: string;
  publication: string;
  /** pgbench, from the server's binaries. */
  pgbench: string;
  /** Temp dir for pgbench's script. */
  dir: string;
  guard: OrphanGuard;
  /** Writes a worker config for a slot; returns its path. */
  workerConfig: (slot: string) => string;
  say: (text: string) => void;
}

export interface LiveRun {
  /** Commits/s asked of pgbench, and what it achieved. */
  rate: number;
  achievedRate: number;
  commits: number;
  /** Commits whose effect was never seen (should be 0). */
  missing: number;
  latencyMs: LatencySummary;
  /** Worker runs only: VmHWM of the worker process over the run. */
  peakRssMb?: number;
}

/** The table's rows from `firstId` on are free for live runs; returns the next free id after a run. */
export interface LiveRange {
  firstId: number;
  /** Rows available from firstId (pgbench's Poisson arrivals may exceed rate × seconds). */
  capacity: number;
  /** A row outside every range: its commit tells the consumer the load is over. */
  markerId: number;
}

const CONSUMER = fileURLToPath(new URL('./consumer-main.js', import.meta.url));

/** The `items` table needs a `t bigint` column and the sequence this creates. */
export async function prepareLive(db: pg.Client): Promise<void> {
  await db.query('CREATE SEQUENCE IF NOT EXISTS bench_ids');
}

/** pgbench at `rate` commits/s for `seconds`, each commit a row of the range; resolves with what it ran. */
async function load(s: LiveSetup, range: LiveRange, rate: number, seconds: number): Promise<{ commits: number; seconds: number }> {
  await s.db.query('SELECT setval($1::regclass, $2::bigint, false)', ['bench_ids', range.firstId]);
  const script = join(s.dir, 'live.sql');
  // The scalar subquery runs once (an InitPlan), so the row is found through the primary key.
  writeFileSync(
    script,
    "UPDATE items SET v = v + 1, t = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint WHERE id = (SELECT nextval('bench_ids'));\n",
  );
  const u = new URL(s.url);
  const clients = Math.max(4, Math.ceil(rate / 500));
  const { stdout } = await promisify(execFile)(
    s.pgbench,
    ['-n', '-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username), '-R', String(rate), '-T', String(seconds), '-c', String(clients), '-j', '2', '-f', script, u.pathname.slice(1)],
    { env: { ...process.env, PGPASSWORD: decodeURIComponent(u.password) }, timeout: (seconds + 60) * 1000 },
  );
  const commits = Number(/number of transactions actually processed: (\d+)/.exec(stdout)?.[1] ?? Number.NaN);
  const last = Number((await s.db.query<{ v: string }>("SELECT last_value::text AS v FROM bench_ids")).rows[0]!.v);
  if (last - range.firstId + 1 > range.capacity) throw new Error(`live run used ${last - range.firstId + 1} rows, more than the ${range.capacity} set aside`);
  return { commits, seconds };
}

/** Commit times (µs since the epoch) of the range's rows that pgbench updated. */
async function commitTimes(db: pg.Client, range: LiveRange): Promise<Map<string, number>> {
  const r = await db.query<{ id: string; t: string }>(
    'SELECT id::text AS id, t::text AS t FROM items WHERE id >= $1 AND id < $2 AND t IS NOT NULL',
    [range.firstId, range.firstId + range.capacity],
  );
  return new Map(r.rows.map((row) => [row.id, Number(row.t)]));
}

async function withSlot<T>(db: pg.Client, slot: string, body: () => Promise<T>): Promise<T> {
  await db.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
  try {
    return await body();
  } finally {
    await db.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]).catch(() => undefined);
  }
}

/**
 * One rate: the decode-only floor and the worker, each on a slot of its own created just before,
 * consume the same commits at the same time, so that both see the same machine. The floor runs in a
 * process of its own; its CPU is small next to the worker's.
 */
export async function liveRun(s: LiveSetup, range: LiveRange, rate: number, seconds: number): Promise<{ floor: LiveRun; worker: LiveRun }> {
  const floorSlot = `bench_live_floor_${rate}`;
  const workerSlot = `bench_live_worker_${rate}`;
  return withSlot(s.db, floorSlot, () =>
    withSlot(s.db, workerSlot, async () => {
      await s.redis.flushdb();
      for (let start = range.firstId; start < range.firstId + range.capacity; start += 1_000) {
        const args: string[] = [];
        for (let id = start; id < Math.min(range.firstId + range.capacity, start + 1_000); id++) args.push(`item:${id}`, 'cached');
        await s.redis.mset(...args);
      }
      await s.redis.set(`item:${range.markerId}`, 'cached');
      const deletedAt = new Map<string, number>();
      const sub = new Redis(s.redisUrl, { lazyConnect: true });
      sub.on('error', () => undefined);
      await sub.connect();
      const prefix = '__keyspace@0__:item:';
      let markerSeen!: () => void;
      const markerDeleted = new Promise<void>((resolve) => {
        markerSeen = resolve;
      });
      const markerKey = String(range.markerId);
      sub.on('pmessage', (_pattern: string, channel: string, message: string) => {
        const at = nowUs();
        if (message !== 'del' && message !== 'unlink') return;
        const id = channel.slice(prefix.length);
        if (id === markerKey) markerSeen();
        else if (!deletedAt.has(id)) deletedAt.set(id, at);
      });
      await sub.psubscribe(`${prefix}*`);
      const floorChild = promisify(execFile)(process.execPath, [CONSUMER, 'live', s.url, floorSlot, s.publication, String(range.markerId)], {
        timeout: (seconds + 120) * 1000,
      });
      floorChild.catch(() => undefined);
      const worker = spawnWorker(s.workerConfig(workerSlot));
      s.guard.track(worker.pid);
      try {
        const exitedEarly = worker.exited.then((code) => {
          throw new Error(`worker exited (${code}) during the live run:\n${worker.outputTail()}`);
        });
        exitedEarly.catch(() => undefined);
        await Promise.race([worker.replicationStarted, exitedEarly]);
        await waitUntil(async () => (await s.db.query('SELECT 1 FROM pg_replication_slots WHERE slot_name = $1 AND active', [floorSlot])).rowCount === 1, 30_000);
        await sleep(1_000);
        const ran = await load(s, range, rate, seconds);
        await s.db.query('UPDATE items SET v = v + 1 WHERE id = $1', [range.markerId]);
        await Promise.race([markerDeleted, exitedEarly, sleep(60_000).then(() => Promise.reject(new Error('the marker key was not deleted within 60 s')))]);
        const peak = worker.memory();
        const { stdout } = await floorChild;
        const floorLatency = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as LatencySummary;
        const times = await commitTimes(s.db, range);
        const latencies: number[] = [];
        const samples: Array<[number, number]> = [];
        let missing = 0;
        for (const [id, t] of times) {
          const at = deletedAt.get(id);
          if (at === undefined) missing++;
          else {
            latencies.push((at - t) / 1000);
            samples.push([t, (at - t) / 1000]);
          }
        }
        // BENCH_LIVE_SAMPLES_DIR: each commit's time (µs since the epoch) and latency (ms), to see when the tail happens.
        const dumpDir = process.env['BENCH_LIVE_SAMPLES_DIR'];
        if (dumpDir) writeFileSync(join(dumpDir, `live-worker-${rate}.json`), JSON.stringify(samples.sort((x, y) => x[0] - y[0])));
        const achievedRate = round(ran.commits / ran.seconds);
        return {
          floor: { rate, achievedRate, commits: ran.commits, missing: ran.commits - floorLatency.samples, latencyMs: floorLatency },
          worker: {
            rate,
            achievedRate,
            commits: ran.commits,
            missing,
            latencyMs: summariseMs(latencies),
            peakRssMb: round((peak?.peakKb ?? Number.NaN) / 1024, 1),
          },
        };
      } finally {
        sub.disconnect();
        await worker.stop(10_000);
        s.guard.track(undefined);
      }
    }),
  );
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntil(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await sleep(50);
  }
}
