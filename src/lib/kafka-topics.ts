import { randomBytes } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';

/** The last messages of one partition, as read by `sampleTopics`. */
export interface SampledMessage {
  topic: string;
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
}

export interface TopicSample {
  topic: string;
  partitions: number;
  /** Messages held by the topic (high watermark minus low, summed over its partitions). */
  held: bigint;
  messages: SampledMessage[];
}

export interface TopicSamples {
  brokers: number;
  /** The named topics (or those the pattern matched) that exist, each with its last messages. */
  topics: TopicSample[];
  /** Named topics the cluster does not have. */
  missing: string[];
  /** Partitions whose last messages were not all read before the time ran out. */
  incomplete: number;
}

/**
 * Reads the last `perPartition` messages of every partition of the topics, for `check`: an admin
 * client lists the topics and their offsets, and a consumer in a group of its own (never
 * committing; the group is deleted after) seeks to them. Changes nothing a worker reads.
 */
export async function sampleTopics(options: {
  brokers: readonly string[];
  topics?: readonly string[] | undefined;
  topicPattern?: string | undefined;
  perPartition: number;
  timeoutMs: number;
}): Promise<TopicSamples> {
  const kafka = new Kafka({
    clientId: 'cdc-invalidator-check',
    brokers: [...options.brokers],
    logLevel: logLevel.NOTHING,
    connectionTimeout: Math.min(options.timeoutMs, 5_000),
    retry: { retries: 1 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    const cluster = await admin.describeCluster();
    const existing = new Set(await admin.listTopics());
    const pattern = options.topicPattern === undefined ? undefined : new RegExp(options.topicPattern);
    const wanted = pattern !== undefined ? [...existing].filter((t) => pattern.test(t)).sort() : [...(options.topics ?? [])];
    const present = wanted.filter((t) => existing.has(t));
    const missing = wanted.filter((t) => !existing.has(t));
    const ranges = new Map<string, { partition: number; from: bigint; to: bigint }[]>();
    const held = new Map<string, bigint>();
    for (const topic of present) {
      const offsets = await admin.fetchTopicOffsets(topic);
      ranges.set(
        topic,
        offsets.map((o) => {
          const low = BigInt(o.low);
          const high = BigInt(o.high);
          const from = high - BigInt(options.perPartition) > low ? high - BigInt(options.perPartition) : low;
          return { partition: o.partition, from, to: high };
        }),
      );
      held.set(topic, offsets.reduce((sum, o) => sum + BigInt(o.high) - BigInt(o.low), 0n));
    }
    const read = await readRanges(kafka, ranges, options.timeoutMs);
    return {
      brokers: cluster.brokers.length,
      topics: present.map((topic) => ({
        topic,
        partitions: ranges.get(topic)!.length,
        held: held.get(topic)!,
        messages: read.messages.filter((m) => m.topic === topic),
      })),
      missing,
      incomplete: read.incomplete,
    };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** Reads each partition's [from, to) with a consumer of its own group, then deletes the group. */
async function readRanges(
  kafka: Kafka,
  ranges: ReadonlyMap<string, readonly { partition: number; from: bigint; to: bigint }[]>,
  timeoutMs: number,
): Promise<{ messages: SampledMessage[]; incomplete: number }> {
  const pending = new Map<string, bigint>();
  for (const [topic, partitions] of ranges) {
    for (const p of partitions) if (p.to > p.from) pending.set(`${topic}\0${p.partition}`, p.to);
  }
  const messages: SampledMessage[] = [];
  if (pending.size === 0) return { messages, incomplete: 0 };
  const groupId = `cdc-invalidator-check-${randomBytes(6).toString('hex')}`;
  const consumer = kafka.consumer({ groupId, retry: { retries: 1 } });
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  try {
    await consumer.connect();
    for (const topic of ranges.keys()) await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        const key = `${batch.topic}\0${batch.partition}`;
        const to = pending.get(key);
        if (to === undefined) return;
        const from = ranges.get(batch.topic)!.find((p) => p.partition === batch.partition)!.from;
        for (const m of batch.messages) {
          const offset = BigInt(m.offset);
          if (offset >= from && offset < to) messages.push({ topic: batch.topic, partition: batch.partition, offset: m.offset, key: m.key, value: m.value });
        }
        if (BigInt(batch.lastOffset()) + 1n >= to) {
          pending.delete(key);
          if (pending.size === 0) done();
        }
      },
    });
    for (const [topic, partitions] of ranges) {
      for (const p of partitions) if (p.to > p.from) consumer.seek({ topic, partition: p.partition, offset: p.from.toString() });
    }
    const timer = setTimeout(done, timeoutMs);
    await finished;
    clearTimeout(timer);
  } finally {
    await consumer.disconnect().catch(() => undefined);
    const admin = kafka.admin();
    await admin
      .connect()
      .then(() => admin.deleteGroups([groupId]))
      .catch(() => undefined)
      .finally(() => admin.disconnect().catch(() => undefined));
  }
  messages.sort((a, b) => (a.topic === b.topic ? a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)) : a.topic < b.topic ? -1 : 1));
  return { messages, incomplete: pending.size };
}
