import { Kafka, logLevel, type Consumer, type EachBatchPayload } from 'kafkajs';
import { SourceUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../runtime/backoff.js';
import { BatchQueue } from '../../runtime/batch-queue.js';
import type { Source, SourceBatch, SourceStatus } from '../source.js';
import { decodeDebeziumRecord, toChange, type Decoded } from './event-parser.js';
import type { TableCatalog } from './identity.js';

export interface DebeziumSourceOptions {
  brokers: string[];
  groupId: string;
  clientId: string;
  topics?: string[] | undefined;
  topicPattern?: string | undefined;
  /** Whether snapshot reads (op "r") invalidate, as inserts. */
  snapshotInvalidates: boolean;
  /** Replica identities (and column types) of the tables, from the database or the config. */
  tables: TableCatalog;
  maxWaitMs: number;
  logger: Logger;
}

/** How long a stop waits for the Kafka consumer to leave its group. */
const DISCONNECT_TIMEOUT_MS = 10_000;

/** A partition's place in what the worker has been handed: the next offset to commit. */
interface KafkaPosition {
  topic: string;
  partition: number;
  /** Offset of the last message of the Kafka batch, plus one: what a commit says. */
  next: string;
}

/**
 * Debezium change events from Kafka, through kafkajs (kept behind this adapter: kafkajs is no
 * longer maintained, and another client would replace only this file).
 *
 * Delivery: each fetched batch of a partition is handed to the worker whole, and its handler waits
 * until the worker has applied it; only then is `offset + 1` committed. The handler never throws
 * (a throwing handler eventually crashes the kafkajs consumer); it keeps heartbeating while it
 * waits, and when the partition is taken away by a rebalance it gives up without committing, so
 * the new owner replays the batch (duplicates, never gaps).
 */
export class DebeziumSource implements Source {
  private readonly queue: BatchQueue<KafkaPosition>;
  private readonly log: Logger;
  private readonly kafka: Kafka;
  private consumer: Consumer | null = null;
  private connected = false;
  private stopping = false;
  /**
   * Waiters per "topic/partition/next offset": resolved with true when the worker acknowledges the
   * batch, with false when the source closes first (then nothing is committed).
   */
  private readonly applied = new Map<string, (applied: boolean) => void>();
  private readonly committed = new Map<string, string>();

  constructor(private readonly options: DebeziumSourceOptions) {
    this.log = options.logger.child({ component: 'debezium-source', groupId: options.groupId });
    this.queue = new BatchQueue<KafkaPosition>({ maxWaitMs: options.maxWaitMs });
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
      sessionTimeout: 30_000,
      heartbeatInterval: 3_000,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 300, maxRetryTime: 10_000, restartOnFailure: async () => !this.stopping },
    });
    this.consumer = consumer;
    await this.options.tables.start();
    consumer.on(consumer.events.GROUP_JOIN, (e) => {
      this.connected = true;
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
    const nowMs = Date.now();
    const decoded: Decoded[] = batch.messages.map((message) =>
      decodeDebeziumRecord(
        { topic: batch.topic, partition: batch.partition, offset: message.offset, key: message.key, value: message.value },
        { snapshotInvalidates: this.options.snapshotInvalidates },
      ),
    );
    try {
      const events = decoded.flatMap((d) => (d.kind === 'event' ? [d.event] : []));
      if (events.length > 0) await this.options.tables.prepare(events, heartbeat);
    } catch (err) {
      // The source is closing, or a rebalance took the partition while the catalog could not be
      // read: nothing is committed, and the batch is replayed.
      this.log.info({ err: toError(err), topic: batch.topic, partition: batch.partition }, 'batch abandoned while reading replica identities');
      return;
    }
    if (this.stopping) return;
    batch.messages.forEach((message, i) => {
      const parsed = decoded[i]!;
      if (parsed.kind === 'event') {
        const change = toChange(parsed.event, this.options.tables.info(parsed.event));
        this.queue.pushChange(change, parsed.event.commitTimeMs ?? Number(message.timestamp));
      } else if (parsed.kind === 'malformed') {
        this.log.error({ topic: batch.topic, partition: batch.partition, offset: message.offset, reason: parsed.reason }, 'malformed event');
        this.queue.pushDeadLetter(
          {
            schema: '',
            table: batch.topic,
            op: 'insert',
            position: `${batch.topic}[${batch.partition}]@${message.offset}`,
            reason: 'malformed_event',
            detail: parsed.reason,
            key: null,
          },
          nowMs,
        );
      }
    });
    const last = batch.messages[batch.messages.length - 1]!.offset;
    const position: KafkaPosition = { topic: batch.topic, partition: batch.partition, next: (BigInt(last) + 1n).toString() };
    const waitKey = `${position.topic}/${position.partition}/${position.next}`;
    const outcome = new Promise<boolean>((resolve) => this.applied.set(waitKey, resolve));
    this.queue.pushPosition(position, nowMs);

    // Wait for the worker, heartbeating so the group keeps the partition with this member.
    for (;;) {
      const done = await Promise.race([outcome.then((applied) => (applied ? 'applied' : 'abandoned')), sleep(2_000).then(() => 'waiting')]);
      if (done === 'abandoned') return;
      if (done === 'applied') break;
      if (!isRunning() || isStale()) {
        this.applied.delete(waitKey);
        return;
      }
      try {
        await heartbeat();
      } catch (err) {
        // A rebalance took the partition: the new owner replays from the last commit.
        this.log.info({ err: toError(err), topic: batch.topic, partition: batch.partition }, 'partition revoked while applying');
        this.applied.delete(waitKey);
        return;
      }
    }
    resolveOffset(last);
    try {
      await this.consumer!.commitOffsets([{ topic: position.topic, partition: position.partition, offset: position.next }]);
      this.committed.set(`${position.topic}[${position.partition}]`, position.next);
    } catch (err) {
      this.log.warn({ err: toError(err), topic: batch.topic, partition: batch.partition }, 'offset commit failed; the batch will be replayed');
    }
  }

  async next(maxChanges: number): Promise<SourceBatch | null> {
    const taken = await this.queue.take(maxChanges);
    if (taken === null) return null;
    return {
      changes: taken.changes,
      oldestCommitTimeMs: taken.oldestCommitTimeMs,
      commitTimesMs: taken.commitTimesMs,
      deadLetters: taken.deadLetters,
      position: taken.positions,
    };
  }

  async acknowledge(batch: SourceBatch): Promise<void> {
    for (const p of batch.position as KafkaPosition[]) {
      const key = `${p.topic}/${p.partition}/${p.next}`;
      this.applied.get(key)?.(true);
      this.applied.delete(key);
    }
  }

  stopIntake(): void {
    this.stopping = true;
    this.queue.close();
  }

  async close(): Promise<void> {
    this.stopIntake();
    // Batches never applied are not committed: the next consumer replays them.
    for (const abandon of this.applied.values()) abandon(false);
    this.applied.clear();
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
      buffered: this.queue.size,
      oldestBufferedCommitTimeMs: this.queue.oldestCommitTimeMs(),
      lagBytes: null,
      details: { kind: 'debezium', groupId: this.options.groupId, topics: this.options.topics ?? this.options.topicPattern },
    };
  }
}
