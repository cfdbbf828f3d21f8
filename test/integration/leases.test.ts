import { afterEach, describe, expect, it } from 'vitest';
import { servicesMissing } from '../harness/services.js';
import { createScenario, type Scenario } from './scenario.js';

let scenario: Scenario | undefined;
afterEach(async () => {
  await scenario?.cleanup();
  scenario = undefined;
});

const RULES = `
  - table: items
    invalidate: ["item:{id}"]
    tags: ["items:{group_id}"]
    patterns: ["list:{group_id}:*"]
`;

/** The lease of a full key name, as the cache client names it. */
const lease = (s: Scenario, key: string) => `cdc-lease:${s.prefix}${key}`;

describe.skipIf(servicesMissing('postgres', 'redis'))('leases', () => {
  it('deleting a key deletes its fill lease, for keys, tag members and pattern matches', async () => {
    scenario = await createScenario({ schema: `CREATE TABLE public.items (id int PRIMARY KEY, group_id int NOT NULL); ALTER TABLE public.items REPLICA IDENTITY FULL;`, rules: RULES });
    const s = scenario;
    await s.startWorker();
    await s.seed('item:1', 'member:1', 'list:7:a');
    await s.redis.sadd(`${s.prefix}tag:items:7`, `${s.prefix}member:1`);
    // list:7:b is being filled: its lease exists, the key does not yet.
    for (const key of ['item:1', 'member:1', 'list:7:a', 'list:7:b', 'unrelated']) await s.redis.set(lease(s, key), 'token');
    await s.sql(`INSERT INTO items VALUES (1, 7)`);
    await s.barrier();
    expect(await s.redis.exists(lease(s, 'list:7:b')), 'lease of a key being filled').toBe(0);
    for (const key of ['item:1', 'member:1', 'list:7:a']) {
      expect(await s.exists(key), key).toBe(false);
      expect(await s.redis.exists(lease(s, key)), `lease of ${key}`).toBe(0);
    }
    expect(await s.redis.exists(lease(s, 'unrelated'))).toBe(1);
  });

  it('can be turned off', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.items (id int PRIMARY KEY, group_id int NOT NULL); ALTER TABLE public.items REPLICA IDENTITY FULL;`,
      rules: RULES,
      redis: '  leases: false\n',
    });
    const s = scenario;
    await s.startWorker();
    await s.seed('item:1');
    await s.redis.set(lease(s, 'item:1'), 'token');
    await s.sql(`INSERT INTO items VALUES (1, 7)`);
    await s.barrier();
    expect(await s.exists('item:1')).toBe(false);
    expect(await s.redis.exists(lease(s, 'item:1'))).toBe(1);
  });
});
