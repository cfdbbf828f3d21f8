import type { Logger } from '../../log.js';
import type { BatchQueue } from '../batch-queue.js';
import { toError } from '../../errors.js';
import { decodeDebeziumRecord, toChange, type Decoded, type DebeziumEvent } from './event-parser.js';
import type { TableCatalog } from './identity.js';
import type { PartitionPosition } from './offset-commits.js';

/** A partition's place in what the worker has been handed: the next offset to commit. */
export interface KafkaPosition extends PartitionPosition {
  /** The group generation (joins seen) the batch was fetched in. */
  generation: number;
}

export interface FetchedMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** The Kafka message timestamp, ms since the epoch as text. */
  timestamp: string;
}

/** One partition's messages as fetched, not decoded yet. */
export interface FetchedBatch {
  topic: string;
  partition: number;
  messages: readonly FetchedMessage[];
  generation: number;
  /** Keeps the partition with this member while the catalog is read for the batch; never throws. */
  keepAlive: () => Promise<void>;
}

/**
 * Fetched batches waiting to be decoded, and the loop that decodes them one at a time, in the
 * order they were fetched, into the worker's queue: changes, dead letters, then the batch's
 * position. Decoding here, not in the fetch handler, lets kafkajs fetch the next batches while
 * these are decoded. Every batch handed over is queued, in order, or the source fails: kafkajs has
 * already moved past it, so a batch skipped while later ones were queued would let their commit
 * cover it.
 */
export class FetchedBatches {
  private readonly waiting: FetchedBatch[] = [];
  private messagesWaiting = 0;
  private draining = false;
  private closed = false;
  /** Topics already warned about: MySQL or MariaDB events without the schema envelope. */
  private readonly warnedNoEnvelope = new Set<string>();

  constructor(
    private readonly options: {
      queue: BatchQueue<KafkaPosition>;
      tables: TableCatalog;
      snapshotInvalidates: boolean;
      log: Logger;
    },
  ) {}

  /** Messages fetched and not decoded yet. */
  get size(): number {
    return this.messagesWaiting;
  }

  add(batch: FetchedBatch): void {
    if (this.closed) return;
    this.waiting.push(batch);
    this.messagesWaiting += batch.messages.length;
    if (!this.draining) {
      this.draining = true;
      // After the handler has returned and kafkajs has sent its next fetch.
      setImmediate(() => void this.drain());
    }
  }

  /** Drops what is waiting: the source is stopping, and nothing after the last acknowledgement is committed. */
  close(): void {
    this.closed = true;
    this.waiting.length = 0;
    this.messagesWaiting = 0;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closed && this.waiting.length > 0) {
        const batch = this.waiting[0]!;
        await this.decode(batch);
        this.waiting.shift();
        this.messagesWaiting -= batch.messages.length;
        // One batch per turn of the event loop: Redis replies and fetch responses get their turn.
        if (this.waiting.length > 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      // Not a message's fault (those are dead letters), and not retryable here: the worker stops,
      // and its next start replays from the last commit.
      if (!this.closed) {
        this.options.log.error({ err: toError(err) }, 'fetched batch could not be decoded');
        this.close();
        this.options.queue.close(toError(err));
      }
    } finally {
      this.draining = false;
    }
  }

  /**
   * Without the schema envelope a MySQL or MariaDB value cannot be read exactly (a DECIMAL is base64,
   * a DATETIME a number of ms, a BIGINT UNSIGNED may have wrapped) and there is no catalog to tell:
   * every value is unknown, so rules take their fallback or write dead letters. Said once per topic.
   */
  private warnNoEnvelope(topic: string, event: DebeziumEvent): void {
    if (this.warnedNoEnvelope.has(topic)) return;
    this.warnedNoEnvelope.add(topic);
    this.options.log.error(
      { topic, connector: event.connector, table: `${event.schema}.${event.table}`, hint: 'set value.converter.schemas.enable=true (and key.converter.schemas.enable=true) on the connector' },
      'events without the schema envelope: MySQL and MariaDB values are read only with it, so every value is unknown (fallbacks or dead letters)',
    );
  }

  private async decode(batch: FetchedBatch): Promise<void> {
    const { queue, tables } = this.options;
    const nowMs = Date.now();
    const options = { snapshotInvalidates: this.options.snapshotInvalidates };
    const decoded: Decoded[] = new Array(batch.messages.length);
    const events: DebeziumEvent[] = [];
    for (let i = 0; i < batch.messages.length; i++) {
      const m = batch.messages[i]!;
      const d = decodeDebeziumRecord({ topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value }, options);
      decoded[i] = d;
      if (d.kind !== 'event') continue;
      // The PostgreSQL connector's old rows depend on the table's replica identity; MySQL and MariaDB send them whole.
      if (d.event.connector === 'postgresql') events.push(d.event);
      else if (d.event.fields.size === 0) this.warnNoEnvelope(batch.topic, d.event);
    }
    // Throws only once the source is closing (it keeps retrying until then).
    if (events.length > 0) await tables.prepare(events, batch.keepAlive);
    if (this.closed) return;
    for (let i = 0; i < decoded.length; i++) {
      const d = decoded[i]!;
      const m = batch.messages[i]!;
      if (d.kind === 'event') {
        queue.pushChange(toChange(d.event, tables), d.event.commitTimeMs ?? Number(m.timestamp), m.value?.length ?? 0);
      } else if (d.kind === 'malformed') {
        this.options.log.error({ topic: batch.topic, partition: batch.partition, offset: m.offset, reason: d.reason }, 'malformed event');
        queue.pushDeadLetter(
          {
            schema: '',
            table: batch.topic,
            op: 'insert',
            position: `${batch.topic}[${batch.partition}]@${m.offset}`,
            reason: 'malformed_event',
            detail: d.reason,
            key: null,
          },
          nowMs,
        );
      }
    }
    const last = batch.messages[batch.messages.length - 1]!.offset;
    queue.pushPosition({ topic: batch.topic, partition: batch.partition, next: (BigInt(last) + 1n).toString(), generation: batch.generation }, nowMs);
  }
}
