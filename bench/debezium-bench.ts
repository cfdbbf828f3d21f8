// The Debezium path against what kafkajs allows on the same topic, in one run (bench/README.md):
//   (noop)   a kafkajs consumer that JSON.parses each value and counts (kafka-noop-consumer.ts)
//   (worker) `node dist/cli.js run --config FILE` with source.kind debezium, one rule deleting
//            order:{id}, timed until Redis holds none of the N keys it was seeded with
// on N change events (Debezium's PostgreSQL connector, JsonConverter with the schema envelope) on one
// topic of `partitions` partitions, keyed by primary key. Each consumer is a fresh node process with
// its own consumer group, reading the topic from the beginning.
import { newestProfile } from './cpu-profile.js';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { Partitioners } from 'kafkajs';
import { KafkaBroker } from '../test/harness/kafka.js';
import { OrphanGuard } from '../test/harness/orphan-guard.js';
import { RedisServer } from '../test/harness/redis.js';
import { summarise, type ProfileSummary } from './cpu-profile.js';
import { opFor, orderFor, ordersTopic, OrdersEventWriter } from './debezium-events.js';
import type { NoopConsumerResult } from './kafka-noop-consumer.js';
import { procStats } from './proc-stats.js';
import { spawnWorker } from './worker-process.js';

export interface DebeziumBenchOptions {
  /** Change events on the topic, one per row id (default in debezium-main: 50,000). */
  events: number;
  /** Partitions of the topic. */
  partitions: number;
  say: (s: string) => void;
  /**
   * Rounds of (noop, worker); every second round runs the worker first, so that neither always runs
   * first after the other. Default 3: on a shared machine one run in a few is slowed by others.
   */
  rounds?: number;
  /** Adds one more run of each consumer under `node --cpu-prof`, profiles written under this dir and summarised. */
  cpuProfileDir?: string;
  /** Give up on a consumer after this long. Default 600,000. */
  timeoutMs?: number;
  /** Also drain the topic with this many workers in one consumer group, each count once (e.g. [1, 2, 3]). */
  groupSizes?: readonly number[];
}

export interface GroupRun {
  workers: number;
  /** Keys deleted from the first poll that saw a deletion to the poll that saw none left. */
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** CPU time of each worker over the drain: a worker without partitions would show next to none. */
  cpuSeconds: (number | null)[];
  committedOffsets: number;
}

export interface NoopRun extends NoopConsumerResult {
  round: number;
}

export interface WorkerRun {
  round: number;
  /** Keys deleted between the first poll that saw a deletion and the poll that saw none left. */
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** From the worker's "joined consumer group" log line to the last key deleted. */
  secondsFromJoin: number;
  /** From spawning the process (node start-up, config, group join included). */
  secondsFromSpawn: number;
  /** CPU time (user + system) of the worker over `seconds`. */
  cpuSeconds: number | null;
  peakRssMb: number;
  /** Sum over the partitions of the offsets the worker's group committed: N once all is applied. */
  committedOffsets: number;
  exitCode: number | string;
}

export interface DebeziumBenchResult {
  events: number;
  partitions: number;
  eventBytes: { min: number; mean: number; max: number };
  produceSeconds: number;
  /** The order the runs were made in. */
  order: string[];
  noop: { runs: NoopRun[]; medianEventsPerSecond: number };
  worker: { runs: WorkerRun[]; medianEventsPerSecond: number; peakRssMb: number };
  /** worker / noop, of the medians. */
  ratio: number;
  /** The same topic drained by 1, 2, 3... workers sharing one consumer group. */
  groups?: GroupRun[];
  /** With cpuProfileDir: where each one's CPU time went, from one more run of each under --cpu-prof. */
  profile?: { worker?: ProfileSummary; noop?: ProfileSummary };
  machine: { cpus: number; cpuModel: string; node: string };
}

const NOOP = fileURLToPath(new URL('./kafka-noop-consumer.js', import.meta.url));
const TOPIC_PREFIX = 'bench';
const POLL_MS = 2;

const round = (x: number, digits = 0) => Math.round(x * 10 ** digits) / 10 ** digits;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export async function runDebeziumBench(opts: DebeziumBenchOptions): Promise<DebeziumBenchResult> {
  const { events: n, partitions, say } = opts;
  const rounds = opts.rounds ?? 3;
  const timeoutMs = opts.timeoutMs ?? 600_000;
  if (!Number.isInteger(n) || n < 2) throw new Error(`events must be an integer of at least 2, not ${n}`);
  const dir = mkdtempSync(join(tmpdir(), 'cdc-bench-dbz-'));
  const guard = new OrphanGuard(dir);
  let broker: KafkaBroker | undefined;
  let redisServer: RedisServer | undefined;
  let redis: Redis | undefined;
  try {
    say('starting Kafka and Redis');
    // Workers started together join one first rebalance (the broker waits this long for them), so a
    // group drains with its partitions split from the start.
    [broker, redisServer] = await Promise.all([KafkaBroker.start({ settings: { 'group.initial.rebalance.delay.ms': 3_000 } }), RedisServer.start()]);
    redis = new Redis(redisServer.url());
    const topic = ordersTopic(TOPIC_PREFIX);
    say(`producing ${n} events on ${topic} (${partitions} partitions)`);
    const produced = await produce(broker, topic, n, partitions);

    const configFor = (groupId: string) => writeWorkerConfig(dir, { groupId, topic, broker: broker!.bootstrap(), redisUrl: redisServer!.url() });
    const order: string[] = [];
    const noopRuns: NoopRun[] = [];
    const workerRuns: WorkerRun[] = [];
    for (let r = 0; r < rounds; r++) {
      const steps = r % 2 === 0 ? (['noop', 'worker'] as const) : (['worker', 'noop'] as const);
      for (const step of steps) {
        order.push(`${step}#${r + 1}`);
        if (step === 'noop') {
          const run = await runNoop({ broker: broker.bootstrap(), topic, groupId: `bench-noop-${r}`, n, timeoutMs, guard });
          noopRuns.push({ round: r + 1, ...run, seconds: round(run.seconds, 3), eventsPerSecond: Math.round(run.eventsPerSecond), secondsFromJoin: round(run.secondsFromJoin, 3) });
          say(`noop #${r + 1}: ${Math.round(run.eventsPerSecond)} events/s`);
        } else {
          const run = await runWorker({ configPath: configFor(`bench-worker-${r}`), groupId: `bench-worker-${r}`, broker, redis, n, timeoutMs, guard });
          workerRuns.push({ round: r + 1, ...run, eventsPerSecond: Math.round(run.eventsPerSecond) });
          say(`worker #${r + 1}: ${Math.round(run.eventsPerSecond)} events/s, peak RSS ${run.peakRssMb} MB`);
        }
      }
    }

    const groups: GroupRun[] = [];
    for (const count of opts.groupSizes ?? []) {
      const groupId = `bench-group-${count}`;
      const run = await runGroup({ configPath: configFor(groupId), groupId, count, broker, redis, n, timeoutMs, guard });
      groups.push(run);
      say(`${count} worker${count === 1 ? '' : 's'} in one group: ${run.eventsPerSecond} events/s (CPU s per worker: ${run.cpuSeconds.join(', ')})`);
    }

    let profile: DebeziumBenchResult['profile'];
    if (opts.cpuProfileDir !== undefined) {
      say(`worker and noop consumer under --cpu-prof (${opts.cpuProfileDir})`);
      const workerDir = join(opts.cpuProfileDir, 'worker');
      const noopDir = join(opts.cpuProfileDir, 'noop');
      for (const d of [workerDir, noopDir]) mkdirSync(d, { recursive: true });
      await runWorker({ configPath: configFor('bench-worker-profile'), groupId: 'bench-worker-profile', broker, redis, n, timeoutMs, guard, cpuProfileDir: workerDir });
      await runNoop({ broker: broker.bootstrap(), topic, groupId: 'bench-noop-profile', n, timeoutMs, guard, cpuProfileDir: noopDir });
      const workerFile = newestProfile(workerDir);
      const noopFile = newestProfile(noopDir);
      profile = {
        ...(workerFile === undefined ? {} : { worker: summarise(workerFile) }),
        ...(noopFile === undefined ? {} : { noop: summarise(noopFile) }),
      };
    }

    const noopMedian = median(noopRuns.map((x) => x.eventsPerSecond));
    const workerMedian = median(workerRuns.map((x) => x.eventsPerSecond));
    const cpu = cpus();
    return {
      events: n,
      partitions,
      eventBytes: produced.bytes,
      produceSeconds: round(produced.seconds, 2),
      order,
      noop: { runs: noopRuns, medianEventsPerSecond: Math.round(noopMedian) },
      worker: { runs: workerRuns, medianEventsPerSecond: Math.round(workerMedian), peakRssMb: Math.max(...workerRuns.map((x) => x.peakRssMb)) },
      ratio: round(workerMedian / noopMedian, 3),
      ...(groups.length === 0 ? {} : { groups }),
      ...(profile === undefined ? {} : { profile }),
      machine: { cpus: cpu.length, cpuModel: cpu[0]?.model ?? 'unknown', node: process.version },
    };
  } finally {
    redis?.disconnect();
    await Promise.allSettled([broker?.destroy(), redisServer?.destroy()]);
    guard.release();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Kafka Connect's producer default batch.size: a record batch holds about this many bytes of one partition. */
const CONNECT_BATCH_BYTES = 16_384;
/** Produce requests in flight at once while filling the topic. */
const SENDS_IN_FLIGHT = 16;

/**
 * N events, one per id 1..N, keyed by primary key (the default partitioner spreads the keys). As
 * Kafka Connect's producer writes them: record batches of about 16 KB per partition, not one
 * batch of everything a request carries, so a fetch returns what a consumer of a real Debezium
 * topic gets (a 1 MB partition fetch of big batches would end in a large partial one, read twice).
 */
async function produce(broker: KafkaBroker, topic: string, n: number, partitions: number): Promise<{ seconds: number; bytes: DebeziumBenchResult['eventBytes'] }> {
  const kafka = broker.client('bench-producer');
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }], waitForLeaders: true });
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await producer.connect();
  const writer = new OrdersEventWriter(TOPIC_PREFIX, 'app');
  const commitMs = Date.UTC(2024, 2, 1, 9, 0, 0);
  const perSend = Math.max(1, Math.floor((CONNECT_BATCH_BYTES * partitions) / 3_300));
  let min = Infinity;
  let max = 0;
  let total = 0;
  let nextId = 1;
  const started = performance.now();
  const sendSome = async (): Promise<void> => {
    while (nextId <= n) {
      const messages: { key: string; value: string }[] = [];
      for (; nextId <= n && messages.length < perSend; nextId++) {
        const value = writer.value(opFor(nextId), orderFor(nextId), commitMs + nextId);
        const bytes = Buffer.byteLength(value);
        min = Math.min(min, bytes);
        max = Math.max(max, bytes);
        total += bytes;
        messages.push({ key: writer.key(nextId), value });
      }
      await producer.send({ topic, messages, acks: -1 });
    }
  };
  try {
    await Promise.all(Array.from({ length: SENDS_IN_FLIGHT }, sendSome));
  } finally {
    await producer.disconnect();
  }
  return { seconds: (performance.now() - started) / 1000, bytes: { min, mean: Math.round(total / n), max } };
}

function writeWorkerConfig(dir: string, o: { groupId: string; topic: string; broker: string; redisUrl: string }): string {
  mkdirSync(join(dir, 'mappings'), { recursive: true });
  writeFileSync(join(dir, 'mappings', 'orders.yaml'), 'rules:\n  - table: public.orders\n    invalidate: ["order:{id}"]\n');
  const path = join(dir, `${o.groupId}.yaml`);
  // Batch settings and everything else left at their defaults; the replica identity is declared, so
  // no database is needed (and none is read per batch).
  writeFileSync(
    path,
    [
      'source:',
      '  kind: debezium',
      `  brokers: ["${o.broker}"]`,
      `  groupId: ${o.groupId}`,
      `  topics: [${o.topic}]`,
      '  tableIdentities: { orders: default }',
      'redis:',
      `  url: "${o.redisUrl}"`,
      'mappings: ./mappings',
      'http:',
      '  port: 0',
      '',
    ].join('\n'),
  );
  return path;
}

async function runNoop(o: { broker: string; topic: string; groupId: string; n: number; timeoutMs: number; guard: OrphanGuard; cpuProfileDir?: string }): Promise<NoopConsumerResult> {
  const profiling = o.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', o.cpuProfileDir];
  const child = promisify(execFile)(process.execPath, [...profiling, NOOP, o.broker, o.topic, o.groupId, String(o.n)], {
    timeout: o.timeoutMs + 10_000,
    env: { ...process.env, BENCH_TIMEOUT_MS: String(o.timeoutMs) },
  });
  o.guard.track(child.child.pid);
  try {
    const { stdout } = await child;
    return JSON.parse(stdout.trim().split('\n').at(-1) ?? '') as NoopConsumerResult;
  } finally {
    o.guard.track(undefined);
  }
}

/** Fills order:1..N, so that every event's invalidation deletes a key, as in a warm cache. */
async function seed(redis: Redis, n: number): Promise<void> {
  await redis.flushdb();
  for (let start = 1; start <= n; start += 1_000) {
    const args: string[] = [];
    for (let id = start; id <= Math.min(n, start + 999); id++) args.push(`order:${id}`, 'cached');
    await redis.mset(...args);
  }
}

async function runWorker(o: {
  configPath: string;
  groupId: string;
  broker: KafkaBroker;
  redis: Redis;
  n: number;
  timeoutMs: number;
  guard: OrphanGuard;
  cpuProfileDir?: string;
}): Promise<Omit<WorkerRun, 'round'>> {
  await seed(o.redis, o.n);
  if ((await o.redis.dbsize()) !== o.n) throw new Error('redis holds other keys than the seeded ones');
  const spawnedAt = performance.now();
  const worker = spawnWorker(o.configPath, o.cpuProfileDir === undefined ? {} : { cpuProfileDir: o.cpuProfileDir });
  o.guard.track(worker.pid);
  try {
    let joinedAt = Number.NaN;
    worker.child.stdout!.on('data', (chunk: Buffer) => {
      if (Number.isNaN(joinedAt) && chunk.includes('"joined consumer group"')) joinedAt = performance.now();
    });
    let exited: number | string | undefined;
    void worker.exited.then((code) => (exited = code));
    // DBSIZE every POLL_MS: the first poll that finds keys gone starts the clock, with the keys
    // already gone then left out of the count, as the noop consumer leaves out its first message.
    let first: { at: number; left: number; cpu: number | undefined } | undefined;
    let left = o.n;
    const deadline = spawnedAt + o.timeoutMs;
    while (left > 0) {
      if (exited !== undefined) throw new Error(`worker exited (${exited}) during the run:\n${worker.outputTail()}`);
      if (performance.now() > deadline) throw new Error(`worker: ${left} keys left after ${o.timeoutMs} ms:\n${worker.outputTail()}`);
      await sleep(POLL_MS);
      left = await o.redis.dbsize();
      if (first === undefined && left < o.n) first = { at: performance.now(), left, cpu: procStats(worker.pid)?.cpuSeconds };
    }
    const doneAt = performance.now();
    const cpuAtEnd = procStats(worker.pid)?.cpuSeconds;
    const peak = worker.memory();
    const exitCode = await worker.stop();
    const seconds = (doneAt - first!.at) / 1000;
    // Everything was applied; after a graceful stop, everything applied is committed too.
    const committedOffsets = await committed(o.broker, o.groupId);
    if (exitCode !== 0 || committedOffsets !== o.n) {
      throw new Error(`worker exited with ${exitCode} having committed ${committedOffsets} of ${o.n} offsets:\n${worker.outputTail()}`);
    }
    return {
      events: first!.left,
      seconds: round(seconds, 3),
      eventsPerSecond: first!.left / seconds,
      secondsFromJoin: round((doneAt - joinedAt) / 1000, 3),
      secondsFromSpawn: round((doneAt - spawnedAt) / 1000, 3),
      cpuSeconds: cpuAtEnd !== undefined && first!.cpu !== undefined ? round(cpuAtEnd - first!.cpu, 2) : null,
      peakRssMb: round((peak?.peakKb ?? Number.NaN) / 1024, 1),
      committedOffsets,
      exitCode,
    };
  } finally {
    await worker.stop(5_000);
    o.guard.track(undefined);
  }
}

/**
 * `count` workers started at once in one new consumer group over the topic: how fast they drain it
 * together, measured as runWorker measures one.
 */
async function runGroup(o: {
  configPath: string;
  groupId: string;
  count: number;
  broker: KafkaBroker;
  redis: Redis;
  n: number;
  timeoutMs: number;
  guard: OrphanGuard;
}): Promise<GroupRun> {
  await seed(o.redis, o.n);
  if ((await o.redis.dbsize()) !== o.n) throw new Error('redis holds other keys than the seeded ones');
  const started = performance.now();
  const workers = Array.from({ length: o.count }, () => spawnWorker(o.configPath));
  // One guard per process: should the bench die, none of them outlives it.
  const extraDirs: string[] = [];
  const guards = workers.map((w, i) => {
    const guard = i === 0 ? o.guard : new OrphanGuard(extraDirs[extraDirs.push(mkdtempSync(join(tmpdir(), 'cdc-bench-group-'))) - 1]!);
    guard.track(w.pid);
    return guard;
  });
  try {
    const exits: (number | string | undefined)[] = workers.map(() => undefined);
    workers.forEach((w, i) => void w.exited.then((code) => (exits[i] = code)));
    let first: { at: number; left: number; cpu: (number | undefined)[] } | undefined;
    let left = o.n;
    while (left > 0) {
      const exited = exits.findIndex((e) => e !== undefined);
      if (exited >= 0) throw new Error(`group worker ${exited} exited (${exits[exited]}) during the run:\n${workers[exited]!.outputTail()}`);
      if (performance.now() > started + o.timeoutMs) throw new Error(`group of ${o.count}: ${left} keys left after ${o.timeoutMs} ms`);
      await sleep(POLL_MS);
      left = await o.redis.dbsize();
      if (first === undefined && left < o.n) first = { at: performance.now(), left, cpu: workers.map((w) => procStats(w.pid)?.cpuSeconds) };
    }
    const doneAt = performance.now();
    const cpu = workers.map((w, i) => {
      const end = procStats(w.pid)?.cpuSeconds;
      const begin = first!.cpu[i];
      return end === undefined || begin === undefined ? null : round(end - begin, 2);
    });
    const codes = await Promise.all(workers.map((w) => w.stop()));
    const committedOffsets = await committed(o.broker, o.groupId);
    if (codes.some((c) => c !== 0) || committedOffsets !== o.n) {
      throw new Error(`group of ${o.count}: exit codes ${codes.join(', ')}, ${committedOffsets} of ${o.n} offsets committed`);
    }
    const seconds = (doneAt - first!.at) / 1000;
    return { workers: o.count, events: first!.left, seconds: round(seconds, 3), eventsPerSecond: Math.round(first!.left / seconds), cpuSeconds: cpu, committedOffsets };
  } finally {
    await Promise.all(workers.map((w) => w.stop(5_000)));
    o.guard.track(undefined);
    for (const guard of guards.slice(1)) guard.release();
    for (const d of extraDirs) rmSync(d, { recursive: true, force: true });
  }
}

/** What the group committed, summed over the topic's partitions. */
async function committed(broker: KafkaBroker, groupId: string): Promise<number> {
  const admin = broker.client('bench-admin').admin();
  await admin.connect();
  try {
    const topics = await admin.fetchOffsets({ groupId, topics: [ordersTopic(TOPIC_PREFIX)] });
    return topics.flatMap((t) => t.partitions).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

