// Catch-up with a lookup rule, against the decode-only consumer on the same WAL. Each change's key
// needs a row of another table: `items` rows point at one of `distinctParams` `groups` rows, and the
// rule looks the group's name up. All slots are created before the load, so every consumer replays
// exactly the same single-row transactions; each is timed from replication start to its last change.
// See bench/README.md ("Lookups").
import { startServers, tearDown, type BenchServers } from './servers.js';
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import pg from 'pg';
import { OrphanGuard } from '../test/harness/orphan-guard.js';
import { diffStats, procStats, type ProcStats } from './proc-stats.js';
import type { ConsumeResult } from './replication-consumer.js';
import { CLI } from './worker-process.js';

export interface LookupBenchOptions {
  /** Single-row transactions in the backlog. */
  changes: number;
  /** Distinct lookup parameters (groups) the changed rows point at, in turn. */
  distinctParams: number;
  say: (s: string) => void;
  /**
   * Worker builds to compare on the same backlog (default: this checkout's dist/cli.js). `lookup:
   * false` runs one with a rule that renders the same keys without the lookup: the worker's own
   * ceiling on this backlog.
   */
  workers?: Array<{ name: string; cli: string; lookup?: boolean }>;
  /** Each round replays the backlog with the decode-only consumer, then with each worker. */
  rounds?: number;
  timeoutMs?: number;
}

export interface LookupBenchRun {
  changesPerSecond: number;
  seconds: number;
  /** CPU time of the consumer process over the backlog. */
  cpuSeconds: number | null;
}

export interface LookupBenchResult {
  date: string;
  changes: number;
  distinctParams: number;
  machine: { cpus: number; cpuModel: string; node: string; postgres: string; redis: string };
  load: { seconds: number; commitsPerSecond: number; walMb: number };
  rounds: Array<{ decodeOnly: LookupBenchRun; workers: Array<LookupBenchRun & { name: string; overDecodeOnly: number }> }>;
}

const PUBLICATION = 'lookup_bench_pub';
const CONSUMER = fileURLToPath(new URL('./consumer-main.js', import.meta.url));
const RULES = `rules:
  - table: public.items
    lookup:
      grp:
        sql: "SELECT name FROM public.groups WHERE id = $1"
        params: [g]
    invalidate: ["item:{id}", "group:{grp.name}"]
`;
/** The same keys without the lookup: a group's name is "g" and its id. */
const RULES_WITHOUT_LOOKUP = `rules:
  - table: public.items
    invalidate: ["item:{id}", "group:g{g}"]
`;

const round = (x: number, digits = 0) => Math.round(x * 10 ** digits) / 10 ** digits;

export async function runLookupBench(opts: LookupBenchOptions): Promise<LookupBenchResult> {
  const { changes: n, distinctParams, say } = opts;
  const workers = opts.workers ?? [{ name: 'worker', cli: CLI }];
  const rounds = opts.rounds ?? 1;
  const timeoutMs = opts.timeoutMs ?? 600_000;
  const dir = mkdtempSync(join(tmpdir(), 'cdc-lookup-bench-'));
  const guard = new OrphanGuard(dir);
  const servers: BenchServers = {};
  try {
    say('starting PostgreSQL and Redis');
    // A slot per consumer per round, all made before the load.
    const { db, redis, url, redisUrl, pgVersion, redisVersion } = await startServers(servers, 'lookup_bench', {
      max_wal_size: '4GB',
      checkpoint_timeout: '30min',
      max_replication_slots: Math.max(10, rounds * (workers.length + 1) + 2),
    });

    await db.query('CREATE TABLE groups (id int PRIMARY KEY, name text NOT NULL)');
    await db.query("INSERT INTO groups SELECT g, 'g' || g FROM generate_series(1, $1::int) g", [distinctParams]);
    // FULL: the rule renders its keys from old rows too, which then hold g.
    await db.query('CREATE TABLE items (id int PRIMARY KEY, g int NOT NULL, v int NOT NULL DEFAULT 0)');
    await db.query('ALTER TABLE items REPLICA IDENTITY FULL');
    await db.query('INSERT INTO items (id, g) SELECT i, (i - 1) % $2::int + 1 FROM generate_series(1, $1::int) i', [n, distinctParams]);
    await db.query(`CREATE PUBLICATION ${PUBLICATION} FOR TABLE items`);
    await db.query(`
      CREATE PROCEDURE bench_load(n int) LANGUAGE plpgsql AS $$
      BEGIN
        FOR i IN 1..n LOOP
          UPDATE items SET v = v + 1 WHERE id = i;
          COMMIT;
        END LOOP;
      END $$`);
    const slots = Array.from({ length: rounds }, (_, r) => ({
      decode: `lookup_bench_decode_${r}`,
      workers: workers.map((_, w) => `lookup_bench_w${w}_${r}`),
    }));
    let startLsn = '';
    for (const slot of slots.flatMap((s) => [s.decode, ...s.workers])) {
      const r = await db.query<{ lsn: string }>("SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
      startLsn ||= r.rows[0]!.lsn;
    }

    say(`generating ${n} single-row transactions over ${distinctParams} groups`);
    const loadStarted = performance.now();
    await db.query('CALL bench_load($1)', [n]);
    const loadSeconds = (performance.now() - loadStarted) / 1000;
    const end = await db.query<{ lsn: string; bytes: string }>(
      'SELECT pg_current_wal_lsn()::text AS lsn, pg_wal_lsn_diff(pg_current_wal_lsn(), $1)::text AS bytes',
      [startLsn],
    );
    const endLsn = end.rows[0]!.lsn;

    const result: LookupBenchResult = {
      date: new Date().toISOString(),
      changes: n,
      distinctParams,
      machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', node: process.version, postgres: pgVersion, redis: redisVersion },
      load: { seconds: round(loadSeconds, 3), commitsPerSecond: Math.round(n / loadSeconds), walMb: round(Number(end.rows[0]!.bytes) / 2 ** 20, 1) },
      rounds: [],
    };
    for (const [r, slot] of slots.entries()) {
      say(`round ${r + 1}: decode only`);
      const { stdout } = await promisify(execFile)(process.execPath, [CONSUMER, 'decode', url, slot.decode, PUBLICATION, String(n)], {
        timeout: timeoutMs + 10_000,
        env: { ...process.env, BENCH_TIMEOUT_MS: String(timeoutMs) },
      });
      const decoded = JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as ConsumeResult;
      const decodeOnly = { changesPerSecond: Math.round(n / decoded.seconds), seconds: round(decoded.seconds, 3), cpuSeconds: decoded.process?.cpuSeconds ?? null };
      say(`round ${r + 1}: decode only ${decodeOnly.changesPerSecond}/s`);
      const runs: LookupBenchResult['rounds'][number]['workers'] = [];
      // Rotated each round, so that no build always runs first.
      for (let k = 0; k < workers.length; k++) {
        const w = (k + r) % workers.length;
        const worker = workers[w]!;
        const lookup = worker.lookup ?? true;
        const configPath = writeConfig(dir, { url, redisUrl, slot: slot.workers[w]!, lookup });
        const run = await runWorker({ cli: worker.cli, configPath, redis, redisUrl, n, distinctParams, timeoutMs, guard });
        await checkCaughtUp(db, slot.workers[w]!, endLsn);
        runs[w] = { name: worker.name, ...run, overDecodeOnly: round(run.changesPerSecond / decodeOnly.changesPerSecond, 3) };
        say(`round ${r + 1}: ${worker.name} ${run.changesPerSecond}/s (${runs[w]!.overDecodeOnly} of decode only)`);
      }
      result.rounds.push({ decodeOnly, workers: runs });
    }
    return result;
  } finally {
    await tearDown({ servers, slotPattern: 'lookup\\_bench\\_%', guard, dir, say });
  }
}

function writeConfig(dir: string, o: { url: string; redisUrl: string; slot: string; lookup: boolean }): string {
  const mappings = o.lookup ? 'mappings' : 'mappings-without-lookup';
  mkdirSync(join(dir, mappings), { recursive: true });
  writeFileSync(join(dir, mappings, 'items.yaml'), o.lookup ? RULES : RULES_WITHOUT_LOOKUP);
  const path = join(dir, `${o.slot}.yaml`);
  // Batch settings are left at their defaults on purpose; any free port for /metrics, so that other runs can go on.
  writeFileSync(
    path,
    ['source:', '  kind: postgres', `  url: "${o.url}"`, `  slot: ${o.slot}`, `  publication: ${PUBLICATION}`, 'redis:', `  url: "${o.redisUrl}"`, `mappings: ./${mappings}`, 'http:', '  port: 0', ''].join('\n'),
  );
  return path;
}

/** Seeds every key, starts `node CLI run`, and times it from "replication started" to item:N deleted. */
async function runWorker(o: {
  cli: string;
  configPath: string;
  redis: Redis;
  redisUrl: string;
  n: number;
  distinctParams: number;
  timeoutMs: number;
  guard: OrphanGuard;
}): Promise<LookupBenchRun> {
  await o.redis.flushdb();
  for (let from = 1; from <= o.n; from += 1_000) {
    const args: string[] = [];
    for (let id = from; id <= Math.min(o.n, from + 999); id++) args.push(`item:${id}`, 'cached');
    await o.redis.mset(...args);
  }
  for (let g = 1; g <= o.distinctParams; g++) await o.redis.set(`group:g${g}`, 'cached');

  const sub = new Redis(o.redisUrl);
  sub.on('error', () => undefined);
  const channel = `__keyspace@0__:item:${o.n}`;
  let child: ReturnType<typeof spawn> | undefined;
  try {
    const lastDeleted = new Promise<number>((resolve) =>
      sub.on('message', (ch: string, message: string) => {
        if (ch === channel && (message === 'del' || message === 'unlink')) resolve(performance.now());
      }),
    );
    await sub.subscribe(channel);
    // BENCH_WORKER_NODE_ARGS, as for npm run bench: extra node flags for the worker (--cpu-prof ...).
    const nodeArgs = (process.env['BENCH_WORKER_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
    const proc = spawn(process.execPath, [...nodeArgs, o.cli, 'run', '--config', o.configPath], {
      env: { ...process.env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    const pid = proc.pid!;
    o.guard.track(pid);
    const tail: string[] = [];
    let started: { at: number; stats: ProcStats | undefined } | undefined;
    const replicationStarted = new Promise<void>((resolve) => {
      let partial = '';
      proc.stdout!.on('data', (chunk: Buffer) => {
        const now = performance.now();
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          tail.push(line);
          if (tail.length > 20) tail.shift();
          if (started === undefined && line.includes('"replication started"')) {
            started = { at: now, stats: procStats(pid) };
            resolve();
          }
        }
      });
    });
    proc.stderr!.on('data', (chunk: Buffer) => tail.push(chunk.toString('utf8').trimEnd()));
    const failed = new Promise<never>((_, reject) => {
      proc.on('exit', (code, signal) => reject(new Error(`worker exited (${code ?? signal}):\n${tail.join('\n')}`)));
      setTimeout(() => reject(new Error(`worker not caught up after ${o.timeoutMs} ms:\n${tail.join('\n')}`)), o.timeoutMs).unref();
    });
    failed.catch(() => undefined);
    await Promise.race([replicationStarted, failed]);
    const doneAt = await Promise.race([lastDeleted, failed]);
    const stats = diffStats(procStats(pid), started!.stats);
    // Every change's keys applied: the item's, and its group's, which only the lookup can name.
    const left = (await o.redis.keys('item:*')).length + (await o.redis.keys('group:*')).length;
    if (left !== 0) throw new Error(`${left} item or group keys still in Redis after the last change was applied`);
    const seconds = (doneAt - started!.at) / 1000;
    return { changesPerSecond: Math.round(o.n / seconds), seconds: round(seconds, 3), cpuSeconds: stats?.cpuSeconds ?? null };
  } finally {
    sub.disconnect();
    if (child !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child!.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    o.guard.track(undefined);
  }
}

async function checkCaughtUp(db: pg.Client, slot: string, endLsn: string): Promise<void> {
  const r = await db.query<{ lsn: string | null; caught_up: boolean | null }>(
    'SELECT confirmed_flush_lsn::text AS lsn, confirmed_flush_lsn >= $2::pg_lsn AS caught_up FROM pg_replication_slots WHERE slot_name = $1',
    [slot, endLsn],
  );
  if (r.rows[0]?.caught_up !== true) throw new Error(`slot ${slot} confirmed ${r.rows[0]?.lsn ?? 'nothing'}, short of ${endLsn}`);
}
