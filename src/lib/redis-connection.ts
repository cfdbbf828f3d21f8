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
