import type { LoadedConfig } from './config/load.js';
import { DEFAULT_REDIS_URL } from './config/schema.js';
import { lostChangesOperations } from './core/recovery.js';
import { SlotLostError } from './errors.js';
import type { Logger } from './log.js';
import { HttpServer } from './http/server.js';
import { PostgresLookupRunner } from './lookups/lookup-runner.js';
import { MemcachedSink } from './sinks/memcached/memcached-sink.js';
import { RedisClusterSink } from './sinks/redis/redis-cluster-sink.js';
import { RedisSink } from './sinks/redis/redis-sink.js';
import { PostgresCatalog } from './sources/debezium/catalog.js';
import { DebeziumSource } from './sources/debezium/debezium-source.js';
import { DeclaredIdentities } from './sources/debezium/identity.js';
import { PostgresSource } from './sources/postgres/postgres-source.js';
import { ReplicaWatcher } from './sources/postgres/replicas.js';
import type { LookupRunner } from './ports/lookups.js';
import type { Sink } from './ports/sink.js';
import type { Source } from './ports/source.js';
import { Health } from './runtime/health.js';
import { Metrics } from './runtime/metrics.js';
import { WorkerStats } from './runtime/stats.js';
import { Worker } from './runtime/worker.js';

export interface Assembly {
  worker: Worker;
  source: Source;
  sink: Sink;
  stats: WorkerStats;
  health: Health;
  metrics: Metrics;
  http: HttpServer;
}

/** Wires source, sink and loop from a loaded config: the one place that knows every adapter. */
export function buildWorker(loaded: LoadedConfig, log: Logger): Assembly {
  const { config, rules } = loaded;
  const metrics = new Metrics();
  const stats = new WorkerStats(metrics);
  // The source recovers a lost slot through the worker, which is made after it.
  let worker: Worker | null = null;
  // Changes a source buffers before it stops reading: enough for the next batch to be ready when one
  // is applied, while bounding memory under huge transactions and backlogs (more buffering only
  // makes changes live long enough to be promoted).
  const highWaterChanges = Math.max(5_000, config.batch.maxChanges * 2);
  // Each source's positions are its own; past this point the worker only hands them back.
  const source: Source =
    config.source.kind === 'postgres'
      ? new PostgresSource({
          url: config.source.url,
          slot: config.source.slot,
          publication: config.source.publication,
          rules,
          replicaIdentity: config.source.replicaIdentity,
          visibility: config.consistency.visibility,
          heartbeatSeconds: config.source.heartbeatSeconds,
          maxWaitMs: config.batch.maxWaitMs,
          highWaterChanges,
          slotStatsIntervalMs: config.http.slotStatsIntervalSeconds * 1000,
          ...(config.source.slotLost === 'recover'
            ? {
                recoverLostChanges: async (version: bigint) => {
                  if (!(await worker!.applyRecovery(lostChangesOperations(rules, version).operations))) {
                    throw new SlotLostError(
                      'stopped before the recovery actions of the lost replication slot were applied: the new slot ' +
                        'streams only what changed after it was created, so caches may be stale. Run every rule\'s ' +
                        'fallback yourself (or flush the affected cache namespaces)',
                    );
                  }
                },
              }
            : {}),
          logger: log,
        })
      : new DebeziumSource({
          brokers: config.source.brokers,
          groupId: config.source.groupId,
          clientId: config.source.clientId,
          sessionTimeoutMs: config.source.sessionTimeoutMs,
          topics: config.source.topics,
          topicPattern: config.source.topicPattern,
          snapshotInvalidates: config.source.snapshot,
          // The catalog when there is a database to read it from, else what the config declares.
          tables:
            config.source.url !== undefined
              ? new PostgresCatalog({ url: config.source.url, tables: rules.tables, logger: log })
              : new DeclaredIdentities(config.source.tableIdentities ?? {}, rules.tables, log),
          maxWaitMs: config.batch.maxWaitMs,
          highWaterChanges,
          logger: log,
        });
  const redis = {
    keyPrefix: config.redis.keyPrefix,
    deleteCommand: config.redis.deleteCommand,
    notifyChannel: config.redis.notifyChannel,
    leasePrefix: config.redis.leases ? config.redis.leasePrefix : null,
    waitReplicas: config.redis.waitReplicas,
    waitTimeoutMs: config.redis.waitTimeoutMs,
    logger: log,
  };
  const sink: Sink =
    config.memcached !== undefined
      ? new MemcachedSink({ ...config.memcached, logger: log })
      : config.redis.cluster !== undefined
        ? new RedisClusterSink({ ...redis, seeds: config.redis.cluster })
        : new RedisSink({ ...redis, url: config.redis.url ?? DEFAULT_REDIS_URL, sentinel: config.redis.sentinel });
  const lookups = buildLookups(config, log);
  const replicas =
    config.consistency.replicas.length === 0
      ? undefined
      : new ReplicaWatcher({
          urls: config.consistency.replicas.map((r) => r.url),
          pollMs: config.consistency.replicaPollMs,
          timeoutMs: config.consistency.replicaTimeoutMs,
          logger: log,
        });
  worker = new Worker({
    source,
    sink,
    rules,
    ...(lookups ? { lookups } : {}),
    ...(replicas ? { replicas } : {}),
    maxChanges: config.batch.maxChanges,
    logger: log,
    stats,
  });
  const health = new Health(
    {
      state: () => worker!.state,
      source,
      sink,
      stats,
      ...(source instanceof PostgresSource ? { retainedWalBytes: () => source.retainedWalBytes() } : {}),
      ...(replicas ? { replicas } : {}),
    },
    { readyMaxLagSeconds: config.http.readyMaxLagSeconds, stuckAfterSeconds: config.http.stuckAfterSeconds },
  );
  metrics.observe(health);
  const http = new HttpServer({ host: config.http.host, port: config.http.port, health, metrics, logger: log });
  return { worker, source, sink, stats, health, metrics, http };
}

/** What runs the rules' lookups: the source database, where there is one to ask. */
export function buildLookups(config: LoadedConfig['config'], log: Logger): LookupRunner | undefined {
  const url = config.source.url;
  return url === undefined ? undefined : new PostgresLookupRunner({ url, logger: log });
}
