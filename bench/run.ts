// npm run bench: throughput of the worker against what the same WAL allows, all in one run.
//
// One table, one publication and three logical slots created together before any load, so each
// consumer replays exactly the same WAL:
//   (a) slot bench_a: the worker itself, `node dist/cli.js run`, in a child process
//   (b) slot bench_b: the project's parser and decoder with nothing behind them (the ceiling)
//   (c) slot bench_c: the same decoding, then `await redis.del(key)` for each change in turn
// then, with the worker caught up, the latency from a lone commit to its key being deleted.
// See bench/README.md.
import { startServers, tearDown, type BenchServers } from './servers.js';
import { newestProfile } from './cpu-profile.js';
import { positiveInt } from './env.js';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { OrphanGuard } from '../test/harness/orphan-guard.js';
import { formatSummary, summarise, type ProfileSummary } from './cpu-profile.js';
import { liveRun, prepareLive, type LiveRange, type LiveRun } from './live.js';
import { bigTransaction, slowRedis } from './memory.js';
import { percentile, round } from './percentiles.js';
import { latencyPlot } from './plot.js';
import { runLookupBench } from './lookup-bench.js';
import { runDebeziumBench } from './debezium-bench.js';
import { diffStats, procStats, type ProcStats } from './proc-stats.js';
import type { ConsumeResult } from './replication-consumer.js';
import { CLI, spawnWorker, type WorkerProcess } from './worker-process.js';

const N = positiveInt('BENCH_CHANGES', 150_000);
const LATENCY_SAMPLES = positiveInt('BENCH_LATENCY_SAMPLES', 200);
const PROFILE = process.env['BENCH_PROFILE'] === '1';
const TIMEOUT_MS = positiveInt('BENCH_TIMEOUT_MS', 600_000);
const ORDER = (process.env['BENCH_ORDER'] || 'bca').split('');
if (ORDER.length !== 3 || !['a', 'b', 'c'].every((x) => ORDER.includes(x))) {
  throw new Error(`BENCH_ORDER must be a permutation of abc, not ${JSON.stringify(process.env['BENCH_ORDER'])}`);
}
const ALL_PHASES = ['catchup', 'live', 'memory', 'lookup', 'debezium'];
const PHASES = new Set((process.env['BENCH_PHASES'] || ALL_PHASES.join(',')).split(','));
for (const phase of PHASES) {
  if (!ALL_PHASES.includes(phase)) throw new Error(`BENCH_PHASES: unknown phase ${JSON.stringify(phase)} (${ALL_PHASES.join(', ')})`);
}
const BULK_ROWS = positiveInt('BENCH_BULK_ROWS', 1_000_000);
const RATES = (process.env['BENCH_RATES'] || '1000,2000,5000').split(',').map((r) => {
  const n = Number(r);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_RATES must be positive integers, not ${JSON.stringify(r)}`);
  return n;
});
const LIVE_SECONDS = positiveInt('BENCH_LIVE_SECONDS', 15);
const RESULTS_DIR = fileURLToPath(new URL('../../results/', import.meta.url));

const PUBLICATION = 'bench_pub';
const SLOTS = { a: 'bench_a', b: 'bench_b', c: 'bench_c', profile: 'bench_profile', visOff: 'bench_vis_off', visAlways: 'bench_vis_always', slow: 'bench_slow_redis', bulk: 'bench_bulk' } as const;

function say(text: string): void {
  process.stderr.write(`[bench] ${text}\n`);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));


/** Fills item:{from..to} in Redis, so that every delete removes a key, as in a warm cache. */
async function seed(redis: Redis, from: number, to: number): Promise<void> {
  await redis.flushdb();
  for (let start = from; start <= to; start += 1_000) {
    const args: string[] = [];
    for (let id = start; id <= Math.min(to, start + 999); id++) args.push(`item:${id}`, 'cached');
    await redis.mset(...args);
  }
}

/**
 * Keyspace notifications (notify-keyspace-events Kg): resolves when a given key is deleted. Each
 * key gets its own channel subscription, so Redis publishes nothing for the other keys deleted.
 */
class DeleteWatcher {
  private readonly waiting = new Map<string, (t: number) => void>();
  private constructor(private readonly sub: Redis) {
    sub.on('message', (channel: string, message: string) => {
      const now = performance.now();
      if (message !== 'del' && message !== 'unlink') return;
      const resolve = this.waiting.get(channel);
      if (resolve === undefined) return;
      this.waiting.delete(channel);
      void sub.unsubscribe(channel).catch(() => undefined);
      resolve(now);
    });
  }

  static async open(url: string): Promise<DeleteWatcher> {
    const sub = new Redis(url, { lazyConnect: true });
    sub.on('error', () => undefined);
    await sub.connect();
    return new DeleteWatcher(sub);
  }

  /**
   * Subscribes to the key's channel; the promise returned resolves with the time of the delete.
   * Await this before making the change that deletes the key.
   */
  async watch(key: string, timeoutMs: number): Promise<{ deleted: Promise<number> }> {
    const channel = `__keyspace@0__:${key}`;
    const deleted = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(channel);
        reject(new Error(`${key} was not deleted within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(channel, (t) => {
        clearTimeout(timer);
        resolve(t);
      });
    });
    deleted.catch(() => undefined);
    await this.sub.subscribe(channel);
    return { deleted };
  }

  close(): void {
    this.sub.disconnect();
  }
}

/**
 * Follows the walsender serving a slot (pg_replication_slots.active_pid) and keeps its latest
 * /proc sample: a walsender lives as long as its connection, so its totals are the run's.
 */
class WalsenderProbe {
  private pid: number | null = null;
  private last: ProcStats | undefined;
  private readonly timer: NodeJS.Timeout;
  private busy = false;

  constructor(
    private readonly db: pg.Client,
    private readonly slot: string,
  ) {
    this.timer = setInterval(() => void this.poll(), 20);
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.pid === null) {
        const r = await this.db.query<{ pid: number | null }>('SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1', [this.slot]);
        this.pid = r.rows[0]?.pid ?? null;
      }
      if (this.pid !== null) this.last = procStats(this.pid) ?? this.last;
    } catch {
      // best effort
    } finally {
      this.busy = false;
    }
  }

  /** Stops following; takes a last sample if the walsender is still there. */
  stop(): ProcStats | undefined {
    clearInterval(this.timer);
    if (this.pid !== null) this.last = procStats(this.pid) ?? this.last;
    return this.last;
  }
}

function workerConfig(dir: string, o: { url: string; slot: string; redisUrl: string; visibility?: 'off' | 'always' }): string {
  mkdirSync(join(dir, 'mappings'), { recursive: true });
  writeFileSync(
    join(dir, 'mappings', 'items.yaml'),
    'rules:\n  - table: public.items\n    invalidate: ["item:{id}"]\n    bump: ["items:version"]\n  - table: public.bulk\n    invalidate: ["bulk:{id}"]\n',
  );
  const path = join(dir, `${o.slot}.yaml`);
  // Batch settings are left at their defaults on purpose.
  writeFileSync(
    path,
    [
      'source:',
      '  kind: postgres',
      `  url: "${o.url}"`,
      `  slot: ${o.slot}`,
      `  publication: ${PUBLICATION}`,
      'redis:',
      `  url: "${o.redisUrl}"`,
      'mappings: ./mappings',
      // Any free port: a bench must not collide with a worker already running on the machine.
      'http:',
      '  port: 0',
      ...(process.env['BENCH_MAX_CHANGES'] ? ['batch:', `  maxChanges: ${process.env['BENCH_MAX_CHANGES']}`] : []),
      ...(o.visibility === undefined ? [] : ['consistency:', `  visibility: ${o.visibility}`]),
      '',
    ].join('\n'),
  );
  return path;
}

interface WorkerRun {
  /** From "replication started" in the worker's log to the last change's key deleted. */
  seconds: number;
  /** From spawning the process (node start-up, config, setup queries included). */
  secondsFromSpawn: number;
  changesPerSecond: number;
  peakRssMb: number;
  rssAfterBacklogMb: number;
  /** CPU time and syscalls of the worker process and of its walsender over the backlog. */
  worker?: ProcStats | undefined;
  walsender?: ProcStats | undefined;
  latency?: { samples: number; p50: number; p90: number; p99: number; max: number; p50FromAck: number; p99FromAck: number };
  exitCode: number | string;
  confirmedFlushLsn: string | null;
}

async function runWorker(o: {
  slot: string;
  configPath: string;
  redis: Redis;
  redisUrl: string;
  db: pg.Client;
  endLsn: string;
  latency: boolean;
  /** Rows N+1+latencyOffset ... are this run's latency samples, so that no run replays another's. */
  latencyOffset?: number;
  cpuProfileDir?: string;
  /** Kills the worker should this process die without stopping it. */
  guard: OrphanGuard;
}): Promise<WorkerRun> {
  await seed(o.redis, 1, N);
  const watcher = await DeleteWatcher.open(o.redisUrl);
  const probe = new WalsenderProbe(o.db, o.slot);
  let worker: WorkerProcess | undefined;
  try {
    const { deleted: lastDeleted } = await watcher.watch(`item:${N}`, TIMEOUT_MS);
    const spawnedAt = performance.now();
    worker = spawnWorker(o.configPath, o.cpuProfileDir === undefined ? {} : { cpuProfileDir: o.cpuProfileDir });
    o.guard.track(worker.pid);
    const w = worker;
    const exitedEarly = w.exited.then((code) => {
      throw new Error(`worker exited (${code}) during the run:\n${w.outputTail()}`);
    });
    exitedEarly.catch(() => undefined);
    const started = await Promise.race([w.replicationStarted, exitedEarly]);
    const startedAt = started.at;
    const doneAt = await Promise.race([lastDeleted, exitedEarly]);
    const workerStats = diffStats(procStats(w.pid), started.stats);
    const walsenderStats = probe.stop();
    const afterBacklog = w.memory();
    // Besides item keys, Redis holds items:version and the worker's applied position.
    const left = (await o.redis.keys('item:*')).length;
    if (left !== 0) throw new Error(`worker: ${left} item keys still in Redis after the last change was applied`);
    const seconds = (doneAt - startedAt) / 1000;

    let latency: WorkerRun['latency'];
    if (o.latency) {
      const fromSend: number[] = [];
      const fromAck: number[] = [];
      for (let i = 0; i < LATENCY_SAMPLES; i++) {
        const id = N + 1 + (o.latencyOffset ?? 0) + i;
        const key = `item:${id}`;
        await o.redis.set(key, 'cached');
        await sleep(5 + Math.random() * 20);
        const { deleted } = await watcher.watch(key, 10_000);
        const sentAt = performance.now();
        await o.db.query('UPDATE items SET v = v + 1 WHERE id = $1', [id]);
        const ackAt = performance.now();
        const at = await Promise.race([deleted, exitedEarly]);
        fromSend.push(at - sentAt);
        fromAck.push(at - ackAt);
      }
      fromSend.sort((x, y) => x - y);
      fromAck.sort((x, y) => x - y);
      latency = {
        samples: fromSend.length,
        p50: round(percentile(fromSend, 50), 2),
        p90: round(percentile(fromSend, 90), 2),
        p99: round(percentile(fromSend, 99), 2),
        max: round(fromSend.at(-1) ?? Number.NaN, 2),
        p50FromAck: round(percentile(fromAck, 50), 2),
        p99FromAck: round(percentile(fromAck, 99), 2),
      };
    }

    const peak = w.memory();
    const exitCode = await w.stop();
    const slot = await o.db.query<{ lsn: string | null; caught_up: boolean | null }>(
      'SELECT confirmed_flush_lsn::text AS lsn, confirmed_flush_lsn >= $2::pg_lsn AS caught_up FROM pg_replication_slots WHERE slot_name = $1',
      [o.slot, o.endLsn],
    );
    if (slot.rows[0]?.caught_up !== true) {
      throw new Error(`slot ${o.slot} confirmed ${slot.rows[0]?.lsn ?? 'nothing'}, short of ${o.endLsn}, after the worker stopped`);
    }
    return {
      seconds,
      secondsFromSpawn: (doneAt - spawnedAt) / 1000,
      changesPerSecond: N / seconds,
      peakRssMb: round((peak?.peakKb ?? Number.NaN) / 1024, 1),
      rssAfterBacklogMb: round((afterBacklog?.rssKb ?? Number.NaN) / 1024, 1),
      worker: workerStats,
      walsender: walsenderStats,
      ...(latency === undefined ? {} : { latency }),
      exitCode,
      confirmedFlushLsn: slot.rows[0]?.lsn ?? null,
    };
  } finally {
    probe.stop();
    watcher.close();
    if (worker !== undefined) await worker.stop(5_000);
    o.guard.track(undefined);
  }
}

const CONSUMER = fileURLToPath(new URL('./consumer-main.js', import.meta.url));

/** (b) and (c) run in a fresh node process each, as the worker does. */
async function runConsumer(
  mode: 'decode' | 'del',
  o: { db: pg.Client; url: string; slot: string; redisUrl?: string },
): Promise<ConsumeResult & { walsender: ProcStats | undefined }> {
  const args = [CONSUMER, mode, o.url, o.slot, PUBLICATION, String(N), ...(o.redisUrl === undefined ? [] : [o.redisUrl])];
  const probe = new WalsenderProbe(o.db, o.slot);
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { timeout: TIMEOUT_MS + 10_000 });
    const result = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as ConsumeResult;
    return { ...result, walsender: probe.stop() };
  } finally {
    probe.stop();
  }
}



interface Services {
  db: pg.Client;
  url: string;
  redis: Redis;
  redisUrl: string;
  dir: string;
  guard: OrphanGuard;
}

/** Catch-up: the same backlog replayed by (a), (b) and (c), then (a) with other visibility settings. */
async function catchUp(s: Services): Promise<{ results: Record<string, unknown>; lines: string[] }> {
  const { db, url, redis, redisUrl, dir, guard } = s;
  // After the publication (pgoutput reads it as of each change), before any load.
  const slotNames = [SLOTS.a, SLOTS.b, SLOTS.c, SLOTS.visOff, SLOTS.visAlways, ...(PROFILE ? [SLOTS.profile] : []), ...(PHASES.has('memory') ? [SLOTS.slow] : [])];
  const slotStart: Record<string, string> = {};
  for (const slot of slotNames) {
    const r = await db.query<{ lsn: string }>("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
    slotStart[slot] = r.rows[0]!.lsn;
  }
  say(`slots ${slotNames.join(', ')} created at ${Object.values(slotStart).join(', ')}`);

  say(`generating ${N} single-row transactions`);
  const loadStarted = performance.now();
  await db.query('CALL bench_load($1)', [N]);
  const loadSeconds = (performance.now() - loadStarted) / 1000;
  const end = await db.query<{ lsn: string; bytes: string }>(
    'SELECT pg_current_wal_lsn()::text AS lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes',
    [slotStart[SLOTS.a]],
  );
  const endLsn = end.rows[0]!.lsn;
  const walMb = Number(end.rows[0]!.bytes) / 2 ** 20;
  say(`load: ${loadSeconds.toFixed(2)} s (${Math.round(N / loadSeconds)} commits/s), ${walMb.toFixed(1)} MB of WAL, end ${endLsn}`);

  // The three runs, in BENCH_ORDER (default bca: the ceiling first, the worker last, where its
  // idle latency is measured).
  let aRun: WorkerRun | undefined;
  let bRun: Awaited<ReturnType<typeof runConsumer>> | undefined;
  let cRun: Awaited<ReturnType<typeof runConsumer>> | undefined;
  for (const which of ORDER) {
    if (which === 'b') {
      say('(b) decode only, slot bench_b');
      bRun = await runConsumer('decode', { db, url, slot: SLOTS.b });
      say(`(b) ${bRun.changes} changes in ${bRun.seconds.toFixed(2)} s: ${Math.round(bRun.changes / bRun.seconds)}/s`);
    } else if (which === 'c') {
      say('(c) decode + one awaited DEL per change, slot bench_c');
      await seed(redis, 1, N);
      cRun = await runConsumer('del', { db, url, slot: SLOTS.c, redisUrl });
      const left = await redis.dbsize();
      if (left !== 0) throw new Error(`(c) left ${left} item keys in Redis`);
      say(`(c) ${cRun.changes} changes in ${cRun.seconds.toFixed(2)} s: ${Math.round(cRun.changes / cRun.seconds)}/s`);
    } else {
      say('(a) the worker (node dist/cli.js run), slot bench_a');
      aRun = await runWorker({
        slot: SLOTS.a,
        configPath: workerConfig(dir, { url, slot: SLOTS.a, redisUrl }),
        redis,
        redisUrl,
        db,
        endLsn,
        latency: true,
        guard,
      });
      say(`(a) ${N} changes in ${aRun.seconds.toFixed(2)} s: ${Math.round(aRun.changesPerSecond)}/s, peak RSS ${aRun.peakRssMb} MB`);
    }
  }
  const a = aRun!;
  const bRate = bRun!.changes / bRun!.seconds;
  const cRate = cRun!.changes / cRun!.seconds;
  const b = bRun!;
  const c = cRun!;

  // consistency.visibility: the worker above ran the default (auto, and this server has no
  // synchronous standbys: one snapshot query per batch). The same backlog and latency samples
  // with the check off and with it always on.
  const visibility: Record<string, { changesPerSecond: number; latencyP50Ms: number; latencyP99Ms: number }> = {
    auto: { changesPerSecond: Math.round(a.changesPerSecond), latencyP50Ms: a.latency!.p50, latencyP99Ms: a.latency!.p99 },
  };
  for (const [mode, slot, offset] of [['off', SLOTS.visOff, LATENCY_SAMPLES], ['always', SLOTS.visAlways, 2 * LATENCY_SAMPLES]] as const) {
    say(`(a) the worker with consistency.visibility: ${mode}, slot ${slot}`);
    const run = await runWorker({
      slot,
      configPath: workerConfig(dir, { url, slot, redisUrl, visibility: mode }),
      redis,
      redisUrl,
      db,
      endLsn,
      latency: true,
      latencyOffset: offset,
      guard,
    });
    visibility[mode] = { changesPerSecond: Math.round(run.changesPerSecond), latencyP50Ms: run.latency!.p50, latencyP99Ms: run.latency!.p99 };
    say(`(a, visibility ${mode}) ${Math.round(run.changesPerSecond)}/s, latency p50 ${run.latency!.p50} ms, p99 ${run.latency!.p99} ms`);
  }

  let profile: ProfileSummary | undefined;
  let profiledRate: number | undefined;
  if (PROFILE) {
    say('(a, profiled) the worker under --cpu-prof, slot bench_profile');
    const profileDir = join(RESULTS_DIR, 'profile');
    mkdirSync(profileDir, { recursive: true });
    const p = await runWorker({
      slot: SLOTS.profile,
      configPath: workerConfig(dir, { url, slot: SLOTS.profile, redisUrl }),
      redis,
      redisUrl,
      db,
      endLsn,
      latency: false,
      cpuProfileDir: profileDir,
      guard,
    });
    profiledRate = p.changesPerSecond;
    const file = newestProfile(profileDir);
    if (file !== undefined) profile = summarise(file);
  }

  const results = {
    changes: N,
    order: ORDER.join(''),
    load: { seconds: round(loadSeconds, 3), commitsPerSecond: Math.round(N / loadSeconds), walMb: round(walMb, 1), endLsn },
    slots: slotStart,
    a: {
      changesPerSecond: Math.round(a.changesPerSecond),
      seconds: round(a.seconds, 3),
      secondsFromSpawn: round(a.secondsFromSpawn, 3),
      peakRssMb: a.peakRssMb,
      rssAfterBacklogMb: a.rssAfterBacklogMb,
      exitCode: a.exitCode,
      confirmedFlushLsn: a.confirmedFlushLsn,
      process: a.worker,
      walsender: a.walsender,
    },
    b: { changesPerSecond: Math.round(bRate), seconds: round(b.seconds, 3), process: b.process, walsender: b.walsender },
    c: { changesPerSecond: Math.round(cRate), seconds: round(c.seconds, 3), process: c.process, walsender: c.walsender },
    ratios: { aOverB: round(a.changesPerSecond / bRate, 3), aOverC: round(a.changesPerSecond / cRate, 2) },
    target: { aOverB: 0.9, met: a.changesPerSecond / bRate >= 0.9 },
    idleLatencyMs: a.latency,
    visibility,
    ...(profile === undefined ? {} : { profile: { changesPerSecondUnderProfiler: Math.round(profiledRate ?? 0), ...profile } }),
  };

  const lat = a.latency!;
  const lines = [
      '',
      `catch-up: ${N} single-row transactions (${results.load.walMb} MB WAL, generated at ${results.load.commitsPerSecond} commits/s)`,
      '',
      row('(a) cdc-invalidator (dist/cli.js run)', `${results.a.changesPerSecond} changes/s`),
      row('(b) decode only (ceiling)', `${results.b.changesPerSecond} changes/s`),
      row('(c) decode + one awaited DEL per change', `${results.c.changesPerSecond} changes/s`),
      row('a / b', `${results.ratios.aOverB.toFixed(3)}`) + `   (target >= 0.9: ${results.target.met ? 'met' : 'NOT met'})`,
      row('a / c', `${results.ratios.aOverC.toFixed(2)}`),
      row('(a) wall time incl. process start-up', `${results.a.secondsFromSpawn.toFixed(2)} s`),
      row('(a) worker peak RSS (VmHWM)', `${a.peakRssMb} MB`),
      row(`idle latency commit -> key deleted (n=${lat.samples}) p50`, `${lat.p50} ms`),
      row('idle latency p99', `${lat.p99} ms`),
      ...(['off', 'auto', 'always'] as const).map((m) => {
        const v = visibility[m]!;
        return row(`consistency.visibility: ${m}`, `${v.changesPerSecond} changes/s`) + `   latency p50 ${v.latencyP50Ms} ms, p99 ${v.latencyP99Ms} ms`;
      }),
      '',
      '  over the backlog            consumer CPU   us/change   socket reads   walsender CPU',
      ...(
        [
          ['(a) worker', a.worker, a.walsender],
          ['(b) decode only', b.process, b.walsender],
          ['(c) awaited DEL', c.process, c.walsender],
        ] as const
      ).map(
        ([label, mine, sender]) =>
          `  ${label.padEnd(26)} ${(mine === undefined ? '?' : `${mine.cpuSeconds.toFixed(2)} s`).padStart(12)}` +
          ` ${(mine === undefined ? '?' : ((mine.cpuSeconds * 1e6) / N).toFixed(1)).padStart(11)}` +
          ` ${String(mine?.readCalls ?? '?').padStart(14)}` +
          ` ${(sender === undefined ? '?' : `${sender.cpuSeconds.toFixed(2)} s`).padStart(15)}`,
      ),
      ...(profile === undefined
        ? []
        : ['', row('(a) under --cpu-prof', `${Math.round(profiledRate ?? 0)} changes/s`), formatSummary(profile)]),
      '',
  ];
  return { results, lines };
}

interface RateRanges {
  rate: number;
  range: LiveRange;
}

/** A range of rows for each rate's live run, from `after + 1` on. */
function liveRangesAfter(after: number): RateRanges[] {
  let next = after + 1;
  const take = (rate: number): LiveRange => {
    // Poisson arrivals at `rate` for LIVE_SECONDS stay well inside 1.2 × rate × seconds + 1,000.
    const capacity = Math.ceil(rate * LIVE_SECONDS * 1.2) + 1_000;
    const range = { firstId: next, capacity, markerId: 0 };
    next += capacity;
    return range;
  };
  const ranges = RATES.map((rate) => ({ rate, range: take(rate) }));
  for (const r of ranges) r.range.markerId = next;
  return ranges;
}

const row = (label: string, value: string) => `  ${label.padEnd(44)} ${value.padStart(12)}`;

/** The command line that produced a result file, with the settings that differ from the defaults. */
function benchCommand(): string {
  const env = Object.entries(process.env)
    .filter(([name]) => name.startsWith('BENCH_') || name === 'CDC_INVALIDATOR_NODE_FLAGS' || name === 'NODE_OPTIONS')
    .map(([name, value]) => `${name}=${value}`);
  return [...env, 'npm run bench'].join(' ');
}

/**
 * Peak RSS where buffering could make the worker grow: a 1M-row transaction, and (when the catch-up
 * phase left its backlog in bench_slow_redis) that backlog drained while Redis keeps pausing.
 */
async function memoryRuns(s: Services, endLsn: string | undefined): Promise<{ results: Record<string, unknown>; lines: string[] }> {
  const setup = { db: s.db, redis: s.redis, guard: s.guard, say };
  const results: Record<string, unknown> = {};
  const lines = ['', 'memory: worker peak RSS (VmHWM)'];
  say(`memory: a transaction of ${BULK_ROWS} rows`);
  const bulk = await bigTransaction(setup, {
    table: 'bulk',
    rows: BULK_ROWS,
    slot: SLOTS.bulk,
    configPath: workerConfig(s.dir, { url: s.url, slot: SLOTS.bulk, redisUrl: s.redisUrl }),
  });
  results['bigTransaction'] = bulk;
  lines.push(`  ${`one transaction of ${BULK_ROWS} rows`.padEnd(44)} ${`${bulk.peakRssMb} MB`.padStart(12)}   (${Math.round(bulk.changes / bulk.seconds)} changes/s)`);
  if (endLsn !== undefined) {
    say(`memory: the ${N}-change backlog while Redis pauses writes 300 ms of every 600 ms`);
    const slow = await slowRedis(setup, {
      slot: SLOTS.slow,
      endLsn,
      changes: N,
      configPath: workerConfig(s.dir, { url: s.url, slot: SLOTS.slow, redisUrl: s.redisUrl }),
      pauseMs: 300,
      periodMs: 600,
    });
    results['slowRedis'] = slow;
    lines.push(`  ${`${N} changes, Redis paused ${slow.pauses} times`.padEnd(44)} ${`${slow.peakRssMb} MB`.padStart(12)}   (${Math.round(slow.changes / slow.seconds)} changes/s)`);
  }
  return { results, lines };
}

/** Live latency at each fixed rate: the decode-only floor, then the worker, on fresh slots. */
async function live(s: Services, ranges: RateRanges[], binDir: string): Promise<{ results: Record<string, unknown>; lines: string[] }> {
  await prepareLive(s.db);
  const setup = {
    db: s.db,
    url: s.url,
    redis: s.redis,
    redisUrl: s.redisUrl,
    publication: PUBLICATION,
    pgbench: join(binDir, 'pgbench'),
    dir: s.dir,
    guard: s.guard,
    workerConfig: (slot: string) => workerConfig(s.dir, { url: s.url, slot, redisUrl: s.redisUrl }),
    say,
  };
  const runs: Array<{ rate: number; floor: LiveRun; worker: LiveRun }> = [];
  for (const r of ranges) {
    say(`live at ${r.rate} commits/s for ${LIVE_SECONDS} s: the worker and the decode-only floor on the same commits`);
    const { floor, worker } = await liveRun(setup, r.range, r.rate, LIVE_SECONDS);
    say(`  floor: ${JSON.stringify(floor.latencyMs)}`);
    say(`  worker: ${JSON.stringify(worker.latencyMs)}, peak RSS ${worker.peakRssMb} MB`);
    if (worker.missing !== 0 || floor.missing !== 0) throw new Error(`live at ${r.rate}/s: ${worker.missing} commits never deleted their key, ${floor.missing} never reached the floor consumer`);
    runs.push({ rate: r.rate, floor, worker });
  }
  const ms = (x: number) => `${x.toFixed(2)}`.padStart(7);
  const lines = [
    '',
    `live: commit -> key deleted, pgbench -R at fixed rates for ${LIVE_SECONDS} s each (ms; floor = decode-only consumer receives the change)`,
    '  rate/s  achieved       p50     p90     p99   p99.9     max   floor p50  floor p99  floor p99.9   peak RSS',
    ...runs.map(
      ({ rate, floor, worker: w }) =>
        `  ${String(rate).padStart(6)} ${String(Math.round(w.achievedRate)).padStart(9)}   ${ms(w.latencyMs.p50)} ${ms(w.latencyMs.p90)} ${ms(w.latencyMs.p99)} ${ms(w.latencyMs.p999)} ${ms(w.latencyMs.max)}` +
        `     ${ms(floor.latencyMs.p50)}    ${ms(floor.latencyMs.p99)}      ${ms(floor.latencyMs.p999)}   ${w.peakRssMb} MB`,
    ),
  ];
  return { results: { seconds: LIVE_SECONDS, runs }, lines };
}

async function main(): Promise<void> {
  say(`N=${N} single-row transactions, ${LATENCY_SAMPLES} latency samples${PROFILE ? ', CPU profile of a 4th run' : ''}`);
  const servers: BenchServers = {};
  const dir = mkdtempSync(join(tmpdir(), 'cdc-bench-'));
  // The harness's watcher: SIGKILLs the worker and removes `dir` if this process dies abruptly.
  const guard = new OrphanGuard(dir);
  const onSignal = () => {
    say('interrupted; cleaning up');
    void Promise.allSettled([servers.postgres?.destroy(), servers.redisServer?.destroy()]).then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    say('starting PostgreSQL and Redis');
    const { postgres, db, redis, url, redisUrl, pgVersion, redisVersion } = await startServers(servers, 'bench', {
      max_wal_size: '4GB',
      checkpoint_timeout: '30min',
    });

    // Rows 1..N: the catch-up backlog; then the idle latency samples; then the live runs' ranges.
    const liveRanges = liveRangesAfter(N + 3 * LATENCY_SAMPLES);
    const markerId = liveRanges.at(-1)!.range.markerId;
    await db.query('CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0, t bigint)');
    await db.query('INSERT INTO items (id) SELECT generate_series(1, $1::int)', [markerId]);
    await db.query('CREATE TABLE bulk (id int PRIMARY KEY, v int NOT NULL)');
    await db.query(`CREATE PUBLICATION ${PUBLICATION} FOR TABLE items, bulk`);
    await db.query(`
      CREATE PROCEDURE bench_load(n int) LANGUAGE plpgsql AS $$
      BEGIN
        FOR i IN 1..n LOOP
          UPDATE items SET v = v + 1 WHERE id = i;
          COMMIT;
        END LOOP;
      END $$`);
    const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', node: process.version, postgres: pgVersion, redis: redisVersion };
    const services: Services = { db, url, redis, redisUrl, dir, guard };
    const results: Record<string, unknown> = { date: new Date().toISOString(), command: benchCommand(), machine };
    const lines = [
      '',
      'cdc-invalidator bench',
      `  ${machine.cpus} CPU ${machine.cpuModel}, node ${process.version}, PostgreSQL ${pgVersion}, Redis ${redisVersion}`,
    ];
    if (PHASES.has('catchup')) {
      const c = await catchUp(services);
      Object.assign(results, c.results);
      lines.push(...c.lines);
    }
    if (PHASES.has('memory')) {
      const endLsn = (results['load'] as { endLsn: string } | undefined)?.endLsn;
      const m = await memoryRuns(services, endLsn);
      results['memory'] = m.results;
      lines.push(...m.lines);
    }
    if (PHASES.has('lookup')) {
      say(`lookup: catch-up of ${N} changes with a lookup rule (1,000 distinct parameters), own servers`);
      const l = await runLookupBench({
        changes: N,
        distinctParams: 1_000,
        timeoutMs: TIMEOUT_MS,
        workers: [
          { name: 'worker', cli: CLI },
          { name: 'worker without lookup', cli: CLI, lookup: false },
        ],
        say: (text) => say(`  ${text}`),
      });
      const round0 = l.rounds[0]!;
      results['lookup'] = { changes: l.changes, distinctParams: l.distinctParams, decodeOnly: round0.decodeOnly, workers: round0.workers };
      lines.push(
        '',
        `lookup: catch-up of ${l.changes} changes, each key needing a lookup (${l.distinctParams} distinct parameters)`,
        row('decode only (ceiling)', `${round0.decodeOnly.changesPerSecond} changes/s`),
        ...round0.workers.map((w) => row(w.name, `${w.changesPerSecond} changes/s`) + `   ${w.overDecodeOnly.toFixed(2)} of decode only`),
      );
    }
    if (PHASES.has('debezium')) {
      const events = positiveInt('BENCH_DEBEZIUM_EVENTS', 50_000);
      say(`debezium: ${events} events on 3 partitions, the worker against a no-op kafkajs consumer, own broker and Redis`);
      const d = await runDebeziumBench({ events, partitions: 3, groupSizes: [1, 2, 3], timeoutMs: TIMEOUT_MS, say: (text) => say(`  ${text}`) });
      results['debezium'] = d;
      lines.push(
        '',
        `debezium: ${d.events} events (${d.eventBytes.mean} bytes on average, schema envelope) on ${d.partitions} partitions, median of ${d.noop.runs.length} runs each`,
        row('no-op kafkajs consumer (JSON.parse)', `${d.noop.medianEventsPerSecond} events/s`),
        row('cdc-invalidator (dist/cli.js run)', `${d.worker.medianEventsPerSecond} events/s`),
        row('worker / no-op', d.ratio.toFixed(3)),
        row('worker peak RSS (VmHWM)', `${d.worker.peakRssMb} MB`),
        ...(d.groups ?? []).map((g) => row(`${g.workers} worker${g.workers === 1 ? '' : 's'} in one consumer group`, `${g.eventsPerSecond} events/s`) + `   CPU s per worker: ${g.cpuSeconds.join(', ')}`),
      );
    }
    if (PHASES.has('live')) {
      const l = await live(services, liveRanges, postgres.binDir);
      results['live'] = l.results;
      lines.push(...l.lines);
    }
    mkdirSync(RESULTS_DIR, { recursive: true });
    writeFileSync(join(RESULTS_DIR, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
    lines.push('', `results: ${join(RESULTS_DIR, 'latest.json')}`);
    if (results['live'] !== undefined) {
      const live = results['live'] as { seconds: number; runs: Parameters<typeof latencyPlot>[0] };
      writeFileSync(join(RESULTS_DIR, 'latest-latency.svg'), latencyPlot(live.runs, `Live latency, ${live.seconds} s per rate, ${machine.cpus} CPUs`));
      lines.push(`plot:    ${join(RESULTS_DIR, 'latest-latency.svg')}`);
    }
    lines.push('');
    process.stdout.write(lines.join('\n'));
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    await tearDown({ servers, slotPattern: 'bench\\_%', guard, dir, say });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
