// Finding redis-server; apart from redis.ts so that the backend choice can ask without starting anything.
import { findOnPath, isExecutable } from './server-process.js';

/** redis-server from $REDIS_SERVER or PATH (Debian also puts it in /usr/bin). */
export function findRedisServer(): string | undefined {
  const fromEnv = process.env.REDIS_SERVER;
  if (fromEnv && isExecutable(fromEnv)) return fromEnv;
  return findOnPath('redis-server') ?? ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find(isExecutable);
}

export function missingRedisMessage(): string {
  return 'redis-server not found in $REDIS_SERVER or PATH. Install it (Debian: apt-get install redis-server) or set REDIS_SERVER.';
}
