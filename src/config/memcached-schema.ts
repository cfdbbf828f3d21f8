// The `memcached:` section of the config file (docs/memcached.md).
import { z } from 'zod';

/** `host:port` of a memcached server (a bare host means port 11211; `[v6]:port` for IPv6). */
const memcachedServer = z
  .string()
  .regex(/^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+)(:\d{1,5})?$/, 'each memcached server is host:port, e.g. 127.0.0.1:11211 (no scheme)');

export const memcachedSchema = z.strictObject({
  /**
   * The servers, as the application's memcached client lists them: a key's server is chosen by
   * libketama's consistent hashing over these names, so both sides must list the same ones.
   */
  servers: z.array(memcachedServer).min(1),
  /** Prepended to every key the worker touches. */
  keyPrefix: z.string().default(''),
  /**
   * delete: `md` removes the item. mark-stale: `md I` marks it stale for staleTtlSeconds, so that one
   * reader refills it while the others are served the stale value (the client's leases).
   */
  invalidation: z.enum(['delete', 'mark-stale']).default('delete'),
  staleTtlSeconds: z.number().int().min(1).max(2_592_000).default(30),
  /** How long a request to one server may take before the batch counts as failed and is retried. */
  commandTimeoutMs: z.number().int().positive().default(2_000),
});
