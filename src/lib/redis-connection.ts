import type { RedisOptions } from 'ioredis';

/**
 * Settings of every connection to Redis, single server or cluster node: ioredis neither retries a
 * command nor resends one after a reconnect (the worker loop owns retries), and the credentials and
 * TLS of the URL (for a cluster, the first seed's serve every node).
 */
export function connectionSettings(url: string, commandTimeoutMs = 10_000): RedisOptions {
  const u = new URL(url);
  return {
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: 5_000,
    connectionName: 'cdc-invalidator',
    ...(u.username !== '' ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password !== '' ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

export interface SentinelTarget {
  /** The set's name, as the sentinels monitor it. */
  name: string;
  /** Sentinel URLs; their user and password are the sentinels' own. */
  nodes: readonly string[];
  /** The primary's credentials. */
  username?: string | undefined;
  password?: string | undefined;
  tls?: boolean;
}

/**
 * A connection to the primary of a Sentinel set. ioredis asks the sentinels for the primary, checks
 * its role on connecting, and with failoverDetector subscribes to the sentinels' +switch-master and
 * drops the connection at once when the primary changes: a primary that was replaced but not yet
 * demoted would otherwise go on acknowledging writes that are lost when it is (with waitReplicas, its
 * WAIT fails instead, and the batch is retried on the new one).
 */
export function sentinelSettings(sentinel: SentinelTarget, commandTimeoutMs: number | undefined, retryStrategy: (times: number) => number): RedisOptions {
  const first = new URL(sentinel.nodes[0]!);
  return {
    ...connectionSettings('redis://localhost', commandTimeoutMs),
    sentinels: sentinel.nodes.map((url) => hostAndPort(url, 26379)),
    name: sentinel.name,
    role: 'master',
    ...(sentinel.username !== undefined ? { username: sentinel.username } : {}),
    ...(sentinel.password !== undefined ? { password: sentinel.password } : {}),
    ...(sentinel.tls ? { tls: {} } : {}),
    ...(first.username !== '' ? { sentinelUsername: decodeURIComponent(first.username) } : {}),
    ...(first.password !== '' ? { sentinelPassword: decodeURIComponent(first.password) } : {}),
    ...(first.protocol === 'rediss:' ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
    failoverDetector: true,
    sentinelRetryStrategy: retryStrategy,
    retryStrategy,
    lazyConnect: true,
    enableOfflineQueue: false,
  };
}

/**
 * A failed command's message, with the connection's own last error when that says more: "Connection
 * is closed" says little, the refusal, WRONGPASS, NOAUTH or TLS failure behind it says what to fix.
 */
export function failureWithCause(err: unknown, cause: Error | null): string {
  const message = err instanceof Error ? err.message : String(err);
  return cause !== null && cause.message !== message ? `${message} (${cause.message})` : message;
}

/** The host and port of a redis:// URL, for ioredis' cluster seeds and sentinel lists. */
export function hostAndPort(url: string, defaultPort = 6379): { host: string; port: number } {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port || defaultPort) };
}
