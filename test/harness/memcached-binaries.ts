// Finding memcached; apart from memcached.ts so that the backend choice can ask without starting anything.
import { findOnPath, isExecutable } from './server-process.js';

/** memcached from $MEMCACHED or PATH. */
export function findMemcached(): string | undefined {
  const fromEnv = process.env.MEMCACHED;
  if (fromEnv && isExecutable(fromEnv)) return fromEnv;
  return findOnPath('memcached') ?? ['/usr/bin/memcached', '/usr/local/bin/memcached'].find(isExecutable);
}

export function missingMemcachedMessage(): string {
  return 'memcached not found in $MEMCACHED or PATH. Install it (Debian: apt-get install memcached) or set MEMCACHED.';
}
