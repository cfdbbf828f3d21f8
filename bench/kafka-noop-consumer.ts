// The reference for the Debezium bench: a kafkajs consumer that does nothing but JSON.parse each
// value, run in a child process of its own as the worker is:
//   node bench/build/bench/kafka-noop-consumer.js BROKER TOPIC GROUP EXPECTED
// Prints one JSON line (NoopConsumerResult). It is the strictest ceiling kafkajs allows: eachBatch
// (no per-message await), no offset commits, kafkajs' defaults otherwise.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Kafka, logLevel } from 'kafkajs';
import { procStats } from './proc-stats.js';

export interface NoopConsumerResult {
  messages: number;
  /** From the first message parsed to the last: (messages - 1) / seconds is its rate. */
  seconds: number;
  eventsPerSecond: number;
  /** From joining the group to the last message parsed. */
  secondsFromJoin: number;
  /** CPU time (user + system) between the first and the last message. */
  cpuSeconds: number | null;
  peakRssKb: number | null;
}

async function main(): Promise<void> {
  const [broker, topic, groupId, expectedText] = process.argv.slice(2);
  const expected = Number(expectedText);
  if (!broker || !topic || !groupId || !Number.isInteger(expected) || expected < 2) {
    throw new Error('usage: kafka-noop-consumer.js BROKER TOPIC GROUP EXPECTED');
  }
  const timeoutMs = Number(process.env['BENCH_TIMEOUT_MS'] || 600_000);
  const kafka = new Kafka({ clientId: 'bench-noop', brokers: [broker], logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({ groupId });
  let joinedAt = Number.NaN;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    joinedAt = performance.now();
  });
  let count = 0;
  let parsed = 0;
  let firstAt = 0;
  let firstCpu: number | undefined;
  let finish!: (at: number) => void;
  const done = new Promise<number>((resolve) => (finish = resolve));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      for (const message of batch.messages) {
        if (message.value !== null) {
          const value = JSON.parse(message.value.toString('utf8')) as { payload?: unknown };
          if (value.payload !== undefined) parsed++;
        }
        count++;
        if (count === 1) {
          firstAt = performance.now();
          firstCpu = procStats('self')?.cpuSeconds;
        }
        if (count === expected) finish(performance.now());
      }
    },
  });
  const timer = setTimeout(() => finish(Number.NaN), timeoutMs);
  const lastAt = await done;
  clearTimeout(timer);
  const lastCpu = procStats('self')?.cpuSeconds;
  const peak = /^VmHWM:\s+(\d+) kB/m.exec(readStatus());
  await consumer.disconnect();
  if (Number.isNaN(lastAt)) throw new Error(`only ${count} of ${expected} messages within ${timeoutMs} ms`);
  if (parsed !== count) throw new Error(`${count - parsed} messages were not { schema, payload } envelopes`);
  const seconds = (lastAt - firstAt) / 1000;
  const result: NoopConsumerResult = {
    messages: count,
    seconds,
    eventsPerSecond: (count - 1) / seconds,
    secondsFromJoin: (lastAt - joinedAt) / 1000,
    cpuSeconds: lastCpu !== undefined && firstCpu !== undefined ? Math.round((lastCpu - firstCpu) * 100) / 100 : null,
    peakRssKb: peak === null ? null : Number(peak[1]),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function readStatus(): string {
  try {
    return readFileSync('/proc/self/status', 'utf8');
  } catch {
    return '';
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
