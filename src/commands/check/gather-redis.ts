import { randomBytes } from 'node:crypto';
import { Cluster, Redis } from 'ioredis';
import { DEFAULT_REDIS_URL } from '../../config/schema.js';
import { connectionSettings, hostAndPort, sentinelSettings, type SentinelTarget } from '../../lib/redis-connection.js';
import type { Failure, RedisFacts } from './facts.js';
import { failure } from './gather-postgres.js';

export interface RedisTarget {
  /** One server, the seed nodes of a cluster, or a Sentinel set. */
  url?: string | undefined;
  cluster?: readonly string[] | undefined;
  sentinel?: SentinelTarget | undefined;
  keyPrefix: string;
  timeoutMs?: number;
}

/**
 * SET ... KEEPTTL inside a script: proves in one call that Lua runs and that the server knows
 * KEEPTTL, the two things the worker's bump script needs.
 */
const PROBE_SCRIPT = "return redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')";

/**
 * Pings Redis, reads INFO, then writes, rewrites through a script and deletes one probe key under
 * the key prefix. The probe key expires on its own within a minute should the DEL never arrive.
 */
export async function gatherRedisFacts(target: RedisTarget): Promise<RedisFacts> {
  const timeoutMs = target.timeoutMs ?? 5_000;
  const settings = {
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
  };
  const seeds = target.cluster;
  // One attempt: a preflight reports what it finds instead of waiting for Redis to come back.
  const client: Redis | Cluster =
    target.sentinel !== undefined
      ? new Redis({ ...sentinelSettings(target.sentinel, timeoutMs, () => 0), ...settings, retryStrategy: () => null, sentinelRetryStrategy: () => null, failoverDetector: false })
      : seeds === undefined
      ? new Redis(target.url ?? DEFAULT_REDIS_URL, { ...settings, lazyConnect: true, retryStrategy: () => null, enableOfflineQueue: false })
      : new Cluster(
          seeds.map((url) => hostAndPort(url)),
          { lazyConnect: true, enableOfflineQueue: false, clusterRetryStrategy: () => null, redisOptions: { ...connectionSettings(seeds[0]!, timeoutMs), ...settings } },
        );
  const where =
    client instanceof Cluster
      ? `cluster (seeds ${seeds!.map((u) => new URL(u).host).join(', ')})`
      : target.sentinel !== undefined
        ? `sentinel set "${target.sentinel.name}" (sentinels ${target.sentinel.nodes.map((u) => new URL(u).host).join(', ')})`
        : describe(client);
  let lastError: unknown = null;
  client.on('error', (err: unknown) => {
    lastError = err;
  });
  try {
    try {
      await client.connect();
      await client.ping();
    } catch (err) {
      return { reachable: false, target: where, error: redisFailure(lastError ?? err) };
    }
    const info = await client.info().catch(() => null);
    const probeKey = `${target.keyPrefix}cdc-invalidator:check:${randomBytes(6).toString('hex')}`;
    const write = await attempt(async () => {
      await client.set(probeKey, 'cdc-invalidator check', 'PX', 60_000);
    });
    let script: Awaited<ReturnType<typeof attempt>> | null = null;
    if (write.ok) {
      script = await attempt(async () => {
        if (client instanceof Cluster) {
          // On a cluster a script is loaded where it runs: EVAL reaches the key's node.
          await client.eval(PROBE_SCRIPT, 1, probeKey, 'cdc-invalidator check (script)');
          return;
        }
        const sha = (await client.script('LOAD', PROBE_SCRIPT)) as string;
        await client.evalsha(sha, 1, probeKey, 'cdc-invalidator check (script)');
      });
      const deleted = await attempt(async () => {
        await client.del(probeKey);
      });
      if (!deleted.ok) return { reachable: true, target: where, ...parseInfo(info), replicas: await fewestReplicas(client, info), probeKey, write: deleted, script };
    }
    return { reachable: true, target: where, ...parseInfo(info), replicas: await fewestReplicas(client, info), probeKey, write, script };
  } finally {
    // After a failed connect the client has ended already; disconnecting again would arm a 2 s
    // timer for a socket that never opened, holding the process open.
    if (client.status !== 'end') client.disconnect();
  }
}

/** `host:port` (or the socket path), and `/db` when not 0: never the user or password. */
function describe(client: Redis): string {
  const o = client.options;
  const at = o.path ? o.path : `${o.host ?? '127.0.0.1'}:${o.port ?? 6379}`;
  return o.db ? `${at}/${o.db}` : at;
}

async function attempt(fn: () => Promise<void>): Promise<{ ok: true } | { ok: false; error: Failure }> {
  try {
    await fn();
    return { ok: true };
  } catch (err) {
    return { ok: false, error: redisFailure(err) };
  }
}

/** Redis replies with `CODE message`; the code (NOAUTH, READONLY, NOPERM, OOM...) decides the fix. */
function redisFailure(err: unknown): Failure {
  const base = failure(err);
  if (base.code !== null && base.code !== 'TIMEOUT') return base;
  const code = /^([A-Z]{2,})\b/.exec(base.message)?.[1];
  if (code !== undefined && code !== 'ERR') return { code, message: base.message };
  return base;
}

/** Replicas connected to the primary, or on a cluster to the master that has fewest; null when unknown. */
async function fewestReplicas(client: Redis | Cluster, info: string | null): Promise<number | null> {
  const count = (text: string | null) => {
    const m = text === null ? null : /^connected_slaves:(\d+)/m.exec(text);
    return m === null ? null : Number(m[1]);
  };
  if (!(client instanceof Cluster)) return count(info);
  try {
    const counts = await Promise.all(client.nodes('master').map(async (node) => count(await node.info('replication'))));
    return counts.some((c) => c === null) || counts.length === 0 ? null : Math.min(...(counts as number[]));
  } catch {
    return null;
  }
}

function parseInfo(info: string | null): { version: string | null; role: string | null; clusterEnabled: boolean } {
  const field = (name: string) => (info === null ? undefined : new RegExp(`^${name}:(.*)$`, 'm').exec(info)?.[1]?.trim());
  return {
    version: field('redis_version') ?? null,
    role: field('role') ?? null,
    clusterEnabled: field('cluster_enabled') === '1',
  };
}
