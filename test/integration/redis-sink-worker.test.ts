import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { registerTags, tagKey } from '../../src/client/tags.js';
import { servicesMissing, sharedRedis } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from './scenario.js';

const SCHEMA = `
  CREATE TABLE public.products (id int PRIMARY KEY, category text NOT NULL, name text NOT NULL);
  ALTER TABLE public.products REPLICA IDENTITY FULL;
`;

const RULES = `
  - table: public.products
    invalidate: ["product:{id}"]
    tags: ["category:{category}"]
    patterns: ["listing:{category}:*"]
`;

let scenario: Scenario | undefined;
let subscriber: Redis | undefined;
afterEach(async () => {
  subscriber?.disconnect();
  subscriber = undefined;
  await scenario?.cleanup();
  scenario = undefined;
});

describe.skipIf(servicesMissing('postgres', 'redis'))('tags, patterns and notifications through the worker', () => {
  it('a row change deletes its tag members, the keys its pattern matches, and is published', async () => {
    const s = (scenario = await createScenario({ schema: SCHEMA, rules: RULES }));
    const channel = `${s.prefix}invalidations`;
    // The scenario's config with the notify channel added to its redis section.
    const configPath = join(s.dir, 'notify.yaml');
    writeFileSync(configPath, readFileSync(s.configPath, 'utf8').replace(/^redis:\n/m, `redis:\n  notifyChannel: "${channel}"\n`));
    const messages: Array<{ keys: string[]; tags: string[]; patterns: string[] }> = [];
    subscriber = new Redis((await sharedRedis()).url());
    subscriber.on('message', (ch: string, message: string) => {
      if (ch === channel) messages.push(JSON.parse(message));
    });
    await subscriber.subscribe(channel);
    const { metrics } = await s.startWorker({ configPath });

    // The application caches product pages under their category's tag, and listings by category.
    for (const id of [1, 2, 3]) {
      await s.seed(`page:${id}`);
      await registerTags(s.redis, `${s.prefix}page:${id}`, [`category:${id === 3 ? 'b' : 'a*'}`], { keyPrefix: s.prefix });
    }
    await s.seed('product:1', 'listing:a*:1', 'listing:a*:2', 'listing:ab:1', 'listing:b:1');

    await s.sql(`INSERT INTO products (id, category, name) VALUES (1, 'a*', 'lamp')`);
    await s.barrier();
    expect(await s.exists('product:1')).toBe(false);
    expect(await s.exists('page:1')).toBe(false);
    expect(await s.exists('page:2')).toBe(false);
    expect(await s.redis.exists(tagKey('category:a*', s.prefix))).toBe(0);
    expect(await s.exists('listing:a*:1')).toBe(false);
    expect(await s.exists('listing:a*:2')).toBe(false);
    // The value's "*" is a literal: "listing:ab:1" does not match "listing:a\*:*".
    expect(await s.exists('listing:ab:1')).toBe(true);
    expect(await s.exists('page:3')).toBe(true);
    expect(await s.exists('listing:b:1')).toBe(true);

    const payload = await waitFor(() => messages.find((m) => m.tags.includes('category:a*')), { message: 'the notification' });
    // The barrier's sentinel change may have come in the same batch: its key may be listed too.
    expect(payload.keys).toContain(`${s.prefix}product:1`);
    expect(payload.tags).toEqual(['category:a*']);
    expect(payload.patterns).toEqual([`${s.prefix}listing:a\\*:*`]);

    const text = await metrics.registry.metrics();
    expect(text).toMatch(/^cdc_invalidator_keys_total\{action="tag"\} 1$/m);
    expect(text).toMatch(/^cdc_invalidator_keys_total\{action="pattern"\} 1$/m);
  });
});
