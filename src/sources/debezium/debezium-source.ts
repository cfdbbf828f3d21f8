import { Kafka, logLevel, type Batch, type Consumer, type EachBatchPayload } from 'kafkajs';
import { SourceUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../lib/backoff.js';
import { BatchQueue, HIGH_WATER_BYTES, MAX_BATCH_BYTES } from '../batch-queue.js';
import type { Source, SourceBatch, SourceStatus } from '../../ports/source.js';
import { FetchedBatches, type KafkaPosition } from './fetched-batches.js';
import type { TableCatalog } from './identity.js';
import { OffsetCommits } from './offset-commits.js';

export interface DebeziumSourceOptions {
  brokers: string[];
  groupId: string;
  clientId: string;
  /** Consumer group session timeout; heartbeats every third of it, at most every 3 s. */
  sessionTimeoutMs?: number;
  topics?: string[] | undefined;
  topicPattern?: string | undefined;
  /** Whether snapshot reads (op "r") invalidate, as inserts. */
  snapshotInvalidates: boolean;
  /** Replica identities (and column types) of the tables, from the database or the config. */
  tables: TableCatalog;
  maxWaitMs: number;
  /** Changes buffered before fetching stops until the worker has taken half of them. */
  highWaterChanges: number;
  logger: Logger;
}

/** How long a stop waits for the Kafka consumer to leave its group, and for the last offset commit. */
const DISCONNECT_TIMEOUT_MS = 10_000;
/** How often a handler held back by a full buffer heartbeats, so the group keeps its partition. */
const HEARTBEAT_WHILE_HELD_MS = 2_000;

/**
 * Debezium change events from Kafka, through kafkajs (kept behind this adapter: kafkajs is no
 * longer maintained, and another client would replace only this file).
 *
 * Delivery: each fetched batch of a partition is handed to a decoding stage (FetchedBatches)
 * that queues it for the worker whole, in fetch order, and kafkajs is told to fetch on from after
 * it (resolveOffset: its fetch position, not a commit), so the next batches are fetched while
 * this one is decoded and the one before is applied. `offset + 1` is committed only once the
 * worker has acknowledged the batch, by one commit request covering every partition acknowledged
 * since the last. When the worker falls `highWaterChanges` behind, the handler holds kafkajs' next
 * fetch (heartbeating) until it has caught up by half. The handler never throws (a throwing
 * handler eventually crashes the kafkajs consumer). Batches fetched before a rebalance are applied
 * but never committed: kafkajs fetches from the last commit again after it, and the new owner of a
 * partition replays them (duplicates, never gaps).
 */
export class DebeziumSource implements Source<KafkaPosition[]> {
  private readonly queue: BatchQueue<KafkaPosition>;
  private readonly log: Logger;
  private readonly kafka: Kafka;
  private readonly commits: OffsetCommits<KafkaPosition>;
  private readonly fetched: FetchedBatches;
  private consumer: Consumer | null = null;
  private connected = false;
  private stopping = false;
  /** Group joins seen: a batch is committed only in the generation it was fetched in. */
  private generation = 0;
  /** Handlers held while the buffer is full, woken when the worker takes from it or the source stops. */
  private roomWaiters: Array<() => void> = [];
  private readonly committed = new Map<string, string>();

  constructor(private readonly options: DebeziumSourceOptions) {
    this.log = options.logger.child({ component: 'debezium-source', groupId: options.groupId });
    this.queue = new BatchQueue<KafkaPosition>({ maxWaitMs: options.maxWaitMs });
    this.commits = new OffsetCommits((positions) => this.commit(positions));
    this.fetched = new FetchedBatches({ queue: this.queue, tables: options.tables, snapshotInvalidates: options.snapshotInvalidates, log: this.log });
    this.kafka = new Kafka({
      clientId: options.clientId,
      brokers: options.brokers,
      logLevel: logLevel.NOTHING,
      // kafkajs reconnects on its own; the consumer's restartOnFailure keeps it alive.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
  }

  async start(): Promise<void> {
    const consumer = this.kafka.consumer({
      groupId: this.options.groupId,
      sessionTimeout: this.options.sessionTimeoutMs ?? 10_000,
      heartbeatInterval: Math.max(100, Math.min(3_000, Math.floor((this.options.sessionTimeoutMs ?? 10_000) / 3))),
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000, restartOnFailure: async () => !this.stopping },
    });
    this.consumer = consumer;
    await this.options.tables.start();
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.connected = true;
      this.generation++;
      this.log.info({ assignment: e.payload.memberAssignment }, 'joined consumer group');
    });
    consumer.on(consumer.events.DISCONNECT, () => {
      this.connected = false;
    });
    consumer.on(consumer.events.CRASH, (e) => {
      this.connected = false;
      this.log.warn({ err: toError(e.payload.error), restart: e.payload.restart }, 'kafka consumer crashed');
    });
    // A broker that is down, or a topic Debezium has not created yet (it does so with the table's
    // first change), is waited for, as a database that is down is.
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
    for (;;) {
      try {
        await consumer.connect();
        const topics = this.options.topicPattern !== undefined ? [new RegExp(this.options.topicPattern)] : (this.options.topics ?? []);
        await consumer.subscribe({ topics, fromBeginning: true });
        break;
      } catch (err) {
        const e = new SourceUnavailableError(`kafka not ready: ${toError(err).message}`, err);
        if (this.stopping) throw e;
        const delayMs = backoff.next();
        this.log.warn({ err: e, attempt: backoff.attempts, delayMs }, 'kafka not ready (broker down, or a topic not created yet); retrying');
        await sleep(delayMs);
        if (this.stopping) throw e;
      }
    }
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: 4,
      eachBatch: (payload) => this.onBatch(payload),
    });
  }

  private async onBatch({ batch, heartbeat, isRunning, isStale, resolveOffset }: EachBatchPayload): Promise<void> {
    if (batch.messages.length === 0 || this.stopping) return;
    this.fetched.add({
      topic: batch.topic,
      partition: batch.partition,
      messages: batch.messages,
      generation: this.generation,
      // A rebalance during a catalog read: the batch is still queued, and not committed.
      keepAlive: () => heartbeat().catch(() => undefined),
    });
    resolveOffset(batch.messages[batch.messages.length - 1]!.offset);
    await this.holdWhileFull(batch, heartbeat, isRunning, isStale);
  }

  /** Changes queued for the worker and messages fetched but not decoded yet. */
  private get buffered(): number {
    return this.queue.size + this.fetched.size;
  }

  /** `highWaterChanges` buffered, or HIGH_WATER_BYTES of queued messages: the next fetch waits. */
  private get full(): boolean {
    return this.buffered >= this.options.highWaterChanges || this.queue.bytes >= HIGH_WATER_BYTES;
  }

  /** Half of both bounds taken by the worker: fetching resumes. */
  private get drained(): boolean {
    return this.buffered <= this.options.highWaterChanges / 2 && this.queue.bytes <= HIGH_WATER_BYTES / 2;
  }

  /**
   * Holds kafkajs' next fetch while the worker has `highWaterChanges` or more waiting, until it
   * has taken half of them, heartbeating so the group keeps the partition with this member.
   */
  private async holdWhileFull(batch: Batch, heartbeat: () => Promise<void>, isRunning: () => boolean, isStale: () => boolean): Promise<void> {
    if (!this.full) return;
    while (!this.stopping && !this.drained) {
      const room = new Promise<void>((resolve) => this.roomWaiters.push(resolve));
      const gaveUp = new AbortController();
      await Promise.race([room, sleep(HEARTBEAT_WHILE_HELD_MS, gaveUp.signal)]);
      gaveUp.abort();
      if (this.stopping || this.drained) return;
      if (!isRunning() || isStale()) return;
      try {
        await heartbeat();
      } catch (err) {
        // A rebalance: what is queued is applied, not committed, and fetched again by the owner.
        this.log.info({ err: toError(err), topic: batch.topic, partition: batch.partition }, 'rebalance while the buffer is full');
        return;
      }
    }
  }

  private wakeHeldHandlers(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Commits positions of the current generation (a batch fetched before a rebalance is not committed). */
  private async commit(positions: KafkaPosition[]): Promise<void> {
    const current = positions.filter((p) => p.generation === this.generation);
    const consumer = this.consumer;
    if (current.length === 0 || consumer === null) return;
    try {
      await consumer.commitOffsets(current.map((p) => ({ topic: p.topic, partition: p.partition, offset: p.next })));
    } catch (err) {
      this.log.warn({ err: toError(err), partitions: current.map((p) => `${p.topic}[${p.partition}]`) }, 'offset commit failed; it is sent again with the next one');
      throw err;
    }
    for (const p of current) this.committed.set(`${p.topic}[${p.partition}]`, p.next);
  }

  async next(maxChanges: number): Promise<SourceBatch<KafkaPosition[]> | null> {
    const taken = await this.queue.take(maxChanges, MAX_BATCH_BYTES);
    if (this.drained) this.wakeHeldHandlers();
    if (taken === null) return null;
    return {
      changes: taken.changes,
      oldestCommitTimeMs: taken.oldestCommitTimeMs,
      commitTimesMs: taken.commitTimesMs,
      deadLetters: taken.deadLetters,
      position: taken.positions,
    };
  }

  async acknowledge(batch: SourceBatch<KafkaPosition[]>): Promise<void> {
    for (const p of batch.position) {
      if (p.generation === this.generation) this.commits.add(p);
    }
  }

  stopIntake(): void {
    this.stopping = true;
    this.fetched.close();
    this.queue.close();
    this.wakeHeldHandlers();
  }

  async close(): Promise<void> {
    this.stopIntake();
    // What the worker acknowledged is committed before the consumer stops (kafkajs drops commits
    // from then on); batches never applied are not, and the next consumer replays them.
    if (!(await this.commits.flush(DISCONNECT_TIMEOUT_MS))) {
      this.log.warn({ timeoutMs: DISCONNECT_TIMEOUT_MS }, 'last offset commit not done; the next consumer replays from the previous one');
    }
    const consumer = this.consumer;
    this.consumer = null;
    if (consumer !== null) {
      // kafkajs can wait for ever to leave a group whose broker went away and came back: a stop must
      // not hang on it (what was applied is committed already; the rest is replayed by the next owner).
      const gaveUp = new AbortController();
      const left = await Promise.race([
        consumer.disconnect().then(
          () => true,
          () => true,
        ),
        sleep(DISCONNECT_TIMEOUT_MS, gaveUp.signal).then(() => false),
      ]);
      gaveUp.abort();
      if (!left) this.log.warn({ timeoutMs: DISCONNECT_TIMEOUT_MS }, 'kafka consumer did not disconnect in time; closing without it');
    }
    await this.options.tables.close();
    this.connected = false;
  }

  status(): SourceStatus {
    const committed = [...this.committed].map(([p, o]) => `${p}@${o}`).join(' ');
    return {
      connected: this.connected,
      received: null,
      applied: committed === '' ? null : committed,
      confirmed: committed === '' ? null : committed,
      buffered: this.buffered,
      oldestBufferedCommitTimeMs: this.queue.oldestCommitTimeMs(),
      lagBytes: null,
      details: { kind: 'debezium', groupId: this.options.groupId, topics: this.options.topics ?? this.options.topicPattern },
    };
  }
}
