import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { RedisSink } from '../sinks/redis/redis-sink.js';
import { PostgresSource } from '../sources/postgres/postgres-source.js';
import { WorkerStats } from './stats.js';
import { Worker } from './worker.js';

export interface Assembly {
  worker: Worker;
  source: PostgresSource;
  sink: RedisSink;
  stats: WorkerStats;
}

/** Wires source, sink and loop from a loaded config: the one place that knows every adapter. */
export function buildWorker(loaded: LoadedConfig, log: Logger): Assembly {
  const { config, rules } = loaded;
  const stats = new WorkerStats();
  const source = new PostgresSource({
    url: config.source.url,
    slot: config.source.slot,
    publication: config.source.publication,
    tables: rules.tables,
    heartbeatSeconds: config.source.heartbeatSeconds,
    maxWaitMs: config.batch.maxWaitMs,
    // Enough to keep Redis round trips full while bounding memory under huge transactions.
    highWaterChanges: Math.max(10_000, config.batch.maxChanges * 4),
    logger: log,
  });
  const sink = new RedisSink({
    url: config.redis.url,
    keyPrefix: config.redis.keyPrefix,
    deleteCommand: config.redis.deleteCommand,
    logger: log,
  });
  const worker = new Worker({ source, sink, rules, maxChanges: config.batch.maxChanges, logger: log, stats });
  return { worker, source, sink, stats };
}
