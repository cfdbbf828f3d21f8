import { describe, expect, it } from 'vitest';
import { DEFAULT_LEASE_PREFIX, leaseKey, staleKey } from '../../src/lib/cache-keys.js';
import { configSchema } from '../../src/config/schema.js';

describe('lease names shared by the client and the worker', () => {
  it('the lease of a full key name is cdc-lease:<full name>', () => {
    expect(leaseKey('app:user:1')).toBe('cdc-lease:app:user:1');
    expect(leaseKey('app:user:1', 'l:')).toBe('l:app:user:1');
    expect(staleKey('app:user:1')).toBe('cdc-stale:app:user:1');
  });

  it("the worker's default redis.leasePrefix is the client's", () => {
    const config = configSchema.parse({
      source: { kind: 'postgres', url: 'postgres://localhost/db' },
      redis: {},
      mappings: './mappings',
    });
    expect(config.redis.leases).toBe(true);
    expect(config.redis.leasePrefix).toBe(DEFAULT_LEASE_PREFIX);
  });
});
