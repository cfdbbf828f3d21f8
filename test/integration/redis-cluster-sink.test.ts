// The Redis Cluster sink against a real cluster of redis-server processes (3 masters, 3 replicas):
// every kind of operation lands where its keys live, and a drain through a slot migration, a
// coordinated failover and a master killed with -9 loses nothing.
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KeyOperation } from '../../src/core/change.js';
import { createCache } from '../../src/client/cache.js';
import { registerTags } from '../../src/client/tags.js';
import { appliedKey, tagKey } from '../../src/lib/cache-keys.js';
import { keySlot, sameSlotName } from '../../src/lib/cluster-slot.js';
import { silentLogger } from '../../src/log.js';
import type { SinkBatch } from '../../src/ports/sink.js';
import { RedisClusterSink, type RedisClusterSinkOptions } from '../../src/sinks/redis/redis-cluster-sink.js';
import { gatherRedisFacts } from '../../src/commands/check/gather-redis.js';
import { redisChecks } from '../../src/commands/check/redis-checks.js';
import { RedisCluster } from '../harness/redis-cluster.js';
import { render } from '../unit/check-fixtures.js';
import { servicesMissing, uniqueName } from '../harness/services.js';

const LEASE = 'cdc-lease:';

describe.skipIf(servicesMissing('redis-binaries'))('redis cluster sink', () => {
  let cluster: RedisCluster;
  let redis: Cluster;
  const sinks: RedisClusterSink[] = [];

  beforeAll(async () => {
    cluster = await RedisCluster.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
    redis = new Cluster(cluster.seeds().map((u) => ({ host: '127.0.0.1', port: Number(new URL(u).port) })), { redisOptions: { maxRetriesPerRequest: 3 } });
    redis.on('error', () => undefined);
  }, 120_000);

  afterAll(async () => {
    for (const sink of sinks) await sink.close();
    redis?.disconnect();
    await cluster?.destroy();
  });

  async function sink(options: Partial<RedisClusterSinkOptions> & { keyPrefix: string }): Promise<RedisClusterSink> {
    const s = new RedisClusterSink({ seeds: cluster.seeds(), deleteCommand: 'del', leasePrefix: LEASE, logger: silentLogger(), ...options });
    sinks.push(s);
    await s.connect();
    return s;
  }

  /** What the worker loop does: the whole batch again until it works; how many attempts failed. */
  const errors: string[] = [];
  async function applyUntilDone(s: RedisClusterSink, batch: SinkBatch): Promise<number> {
    for (let failures = 0; ; failures++) {
      try {
        await s.apply(batch);
        return failures;
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  async function existing(keys: readonly string[]): Promise<string[]> {
    const found: string[] = [];
    for (const key of keys) if ((await redis.exists(key)) === 1) found.push(key);
    return found;
  }

  it('computes the slot of a key as the cluster does', async () => {
    const keys = ['a', 'user:1', '{tag}x', 'x{}y', 'foo{{bar}}', 'ключ:1', 'emoji:🙂', ...Array.from({ length: 100 }, (_, i) => `k:${i * 7919}:${'z'.repeat(i % 13)}`)];
    const node = cluster.connect(cluster.nodes[0]!);
    try {
      for (const key of keys) expect([key, keySlot(key)]).toEqual([key, Number(await node.call('CLUSTER', 'KEYSLOT', key))]);
    } finally {
      node.disconnect();
    }
  });

  it('deletes keys with their leases, bumps, increments, records dead letters and the position, on every master', async () => {
    const prefix = `${uniqueName('c')}:`;
    const s = await sink({ keyPrefix: prefix });
    const ids = Array.from({ length: 60 }, (_, i) => i);
    const full = (id: number) => `${prefix}item:${id}`;
    for (const id of ids) {
      await redis.set(full(id), 'cached');
      await redis.set(sameSlotName(LEASE, full(id))!, 'token');
    }
    // The keys spread over all three masters.
    const owners = new Set(await Promise.all(ids.map(async (id) => (await cluster.ownerOf(keySlot(full(id)))).server.port)));
    expect(owners.size).toBe(3);
    await redis.set(`${prefix}v:a`, '100');
    const operations: KeyOperation[] = [
      ...ids.filter((id) => id % 2 === 0).map((id) => ({ action: 'delete' as const, key: `item:${id}` })),
      { action: 'bump', key: 'v:a', version: 99n },
      { action: 'bump', key: 'v:b', version: 18446744073709551615n },
      { action: 'bump', key: 'v:c', version: null },
    ];
    await s.apply({
      operations,
      deadLetters: [{ schema: 'public', table: 't', op: 'update', position: '0/1', reason: 'unknown_value', detail: 'd', key: { id: '1' } }],
      appliedPosition: '0/16B3748',
    });
    expect(await existing(ids.filter((id) => id % 2 === 0).map(full))).toEqual([]);
    expect(await existing(ids.filter((id) => id % 2 === 0).map((id) => sameSlotName(LEASE, full(id))!))).toEqual([]);
    expect((await existing(ids.filter((id) => id % 2 === 1).map(full))).length).toBe(30);
    expect(await redis.get(`${prefix}v:a`)).toBe('100'); // never moved back
    expect(await redis.get(`${prefix}v:b`)).toBe('18446744073709551615');
    expect(await redis.get(`${prefix}v:c`)).toBe('1');
    expect(await redis.get(appliedKey(prefix))).toBe('0/16B3748');
    expect(await redis.xlen(`${prefix}cdc-invalidator:dead-letters`)).toBe(1);
    // Again (a retried batch): nothing changes, the position does not move back.
    await s.apply({ operations, deadLetters: [], appliedPosition: '0/16B3700' });
    expect(await redis.get(`${prefix}v:c`)).toBe('2');
    expect(await redis.get(appliedKey(prefix))).toBe('0/16B3748');
  }, 60_000);

  it('invalidates tags and patterns whose keys live on every master', async () => {
    const prefix = `${uniqueName('c')}:`;
    const s = await sink({ keyPrefix: prefix, tagStepSize: 7, scanCount: 5 });
    const tagged = Array.from({ length: 40 }, (_, i) => `${prefix}page:${i}`);
    for (const key of tagged) {
      await redis.set(key, 'cached');
      await redis.sadd(tagKey('user:1', prefix), key);
    }
    await redis.set(sameSlotName(LEASE, tagged[3]!)!, 'token');
    const matching = Array.from({ length: 40 }, (_, i) => `${prefix}list:${i}`);
    for (const key of matching) await redis.set(key, 'cached');
    // A key being filled: only its lease exists.
    await redis.set(sameSlotName(LEASE, `${prefix}list:filling`)!, 'token');
    await redis.set(`${prefix}other`, 'kept');
    await s.apply({ operations: [{ action: 'tag', tag: 'user:1' }, { action: 'pattern', pattern: 'list:*' }], deadLetters: [] });
    expect(await existing(tagged)).toEqual([]);
    expect(await redis.exists(tagKey('user:1', prefix), sameSlotName('', tagKey('user:1', prefix), ':pending')!)).toBe(0);
    expect(await redis.exists(sameSlotName(LEASE, tagged[3]!)!)).toBe(0);
    expect(await existing(matching)).toEqual([]);
    expect(await redis.exists(sameSlotName(LEASE, `${prefix}list:filling`)!)).toBe(0);
    expect(await redis.get(`${prefix}other`)).toBe('kept');
  }, 60_000);

  it('the cache client on a cluster: leases in the key\'s slot, a fill refused after the worker deleted the key, tags across slots', async () => {
    const prefix = `${uniqueName('c')}:`;
    const s = await sink({ keyPrefix: prefix, notifyChannel: `${prefix}notify` });
    const cache = createCache(redis, { keyPrefix: prefix, ttlSeconds: 60 });
    try {
      // A miss takes the lease (named in the key's slot); the worker deletes the key while the
      // loader reads the database: the fill is refused, nothing stale is cached.
      let release!: () => void;
      const loading = cache.get('user:1', () => new Promise<string>((r) => (release = () => r('old'))), { tags: ['team:7', 'org:3'] });
      await waitUntil(() => release !== undefined);
      expect(await redis.exists(sameSlotName(LEASE, `${prefix}user:1`)!)).toBe(1);
      // Registered under both tags, whose sets are in other slots.
      expect(await redis.sismember(tagKey('team:7', prefix), `${prefix}user:1`)).toBe(1);
      expect(await redis.sismember(tagKey('org:3', prefix), `${prefix}user:1`)).toBe(1);
      await s.apply({ operations: [{ action: 'delete', key: 'user:1' }], deadLetters: [] });
      release();
      expect(await loading).toBe('old');
      expect(cache.stats.fillsRefused).toBe(1);
      expect(await redis.exists(`${prefix}user:1`)).toBe(0);

      // The next read fills; a tag invalidation by the worker removes it.
      expect(await cache.get('user:1', async () => 'new', { tags: ['team:7'] })).toBe('new');
      expect(await cache.get('user:1', async () => 'unused')).toBe('new');
      await s.apply({ operations: [{ action: 'tag', tag: 'team:7' }], deadLetters: [] });
      expect(await redis.exists(`${prefix}user:1`)).toBe(0);

      // registerTags on a cluster, then invalidate(), then waitForCommit against the worker's position.
      await redis.set(`${prefix}page:1`, 'x');
      await registerTags(redis, `${prefix}page:1`, ['a', 'b', 'c']);
      for (const tag of ['a', 'b', 'c']) expect(await redis.sismember(tagKey(tag), `${prefix}page:1`)).toBe(1);
      await cache.invalidate('page:1');
      expect(await redis.exists(`${prefix}page:1`)).toBe(0);
      await s.apply({ operations: [], deadLetters: [], appliedPosition: '0/AB' });
      expect(await cache.waitForCommit('0/AB', { timeoutMs: 1_000 })).toBe(true);
    } finally {
      await cache.close();
    }
  }, 60_000);

  it('the client\'s L1 on a cluster follows the worker\'s notifications', async () => {
    const prefix = `${uniqueName('c')}:`;
    const channel = `${prefix}notify`;
    const s = await sink({ keyPrefix: prefix, notifyChannel: channel });
    const cache = createCache(redis, { keyPrefix: prefix, ttlSeconds: 60, l1: { channel, ttlMs: 60_000 } });
    try {
      await waitUntil(() => cache.l1Active, 10_000);
      expect(await cache.get('k', async () => 'v1')).toBe('v1');
      expect(await cache.get('k', async () => 'unused')).toBe('v1');
      expect(cache.stats.l1Hits).toBe(1);
      await s.apply({ operations: [{ action: 'delete', key: 'k' }], deadLetters: [] });
      let value = '';
      await waitUntil(() => value === 'v2', 10_000, async () => {
        value = await cache.get('k', async () => 'v2');
      });
    } finally {
      await cache.close();
    }
  }, 30_000);

  it('check reaches the cluster through redis.cluster, writes a probe key and runs a script where it lives', async () => {
    const facts = await gatherRedisFacts({ cluster: cluster.seeds(), keyPrefix: `${uniqueName('c')}:` });
    expect(facts).toMatchObject({ reachable: true, clusterEnabled: true, write: { ok: true }, script: { ok: true } });
    expect(facts).toMatchObject({ replicas: 1 });
    expect(render(redisChecks(facts, { cluster: true, waitReplicas: 1 })).filter((line) => !line.startsWith('ok '))).toEqual([]);
    expect(render(redisChecks(facts, { cluster: true, waitReplicas: 2 })).join('\n')).toContain('redis.waitReplicas is 2, and a master has 1 replica connected');
    // The same nodes named as one server: check says what to write instead.
    const single = await gatherRedisFacts({ url: cluster.seeds()[0]!, keyPrefix: 'x:' });
    expect(render(redisChecks(single)).join('\n')).toContain('list the cluster\'s nodes as redis.cluster');
  }, 30_000);

  it('a drain through a slot migration, a coordinated failover and a master killed with -9 loses nothing', async () => {
    const prefix = `${uniqueName('c')}:`;
    const s = await sink({ keyPrefix: prefix, waitReplicas: 1, waitTimeoutMs: 2_000 });
    const batches = 150;
    const perBatch = 40;
    const key = (b: number, i: number) => `item:${b}:${i}`;
    for (let b = 0; b < batches; b++) {
      await Promise.all(Array.from({ length: perBatch }, (_, i) => redis.set(prefix + key(b, i), 'cached')));
    }
    let failures = 0;
    let applied = 0;
    const drain = (async () => {
      for (let b = 0; b < batches; b++) {
        failures += await applyUntilDone(s, { operations: Array.from({ length: perBatch }, (_, i) => ({ action: 'delete' as const, key: key(b, i) })), deadLetters: [] });
        applied = b + 1;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const faults = (async () => {
      await waitUntil(() => applied >= 10);
      // Two slots holding keys of later batches move to another master, key by key.
      const masters = await cluster.masters();
      for (const slot of [keySlot(prefix + key(120, 0)), keySlot(prefix + key(130, 1))]) {
        const owner = await cluster.ownerOf(slot);
        const target = masters.find((m) => m.node !== owner)!.node;
        await cluster.migrateSlot(slot, target, () => new Promise((r) => setTimeout(r, 10)));
      }
      await waitUntil(() => applied >= 50);
      await cluster.failover((await cluster.masters())[0]!.node);
      await waitUntil(() => applied >= 90);
      const victim = (await cluster.masters())[1]!;
      await victim.node.server.kill();
      // The replica that takes over has no replica of its own until the killed node is back: with
      // waitReplicas 1 the batches on its slots wait for that, and are retried meanwhile.
      await waitUntil(() => errors.length > 0 || applied === batches);
      await victim.node.server.restart();
    })();
    await Promise.all([drain, faults]);
    const all: string[] = [];
    for (let b = 0; b < batches; b++) for (let i = 0; i < perBatch; i++) all.push(prefix + key(b, i));
    expect(await existing(all)).toEqual([]);
    // The killed master's batches failed (its replica had no replica to WAIT on until it came back)
    // and were retried whole.
    expect(failures).toBeGreaterThan(0);
    expect(errors.some((e) => /replicas of .* acknowledged|Connection is closed|redirections/.test(e))).toBe(true);
    console.log(`cluster drain: ${batches * perBatch} keys in ${batches} batches, ${failures} failed attempts retried, 0 lost; errors seen: ${[...new Set(errors)].slice(0, 3).join(' | ')}`);
  }, 180_000);
});

async function waitUntil(condition: () => boolean, timeoutMs = 120_000, step?: () => Promise<void>): Promise<void> {
  const started = Date.now();
  for (;;) {
    await step?.();
    if (condition()) return;
    if (Date.now() - started > timeoutMs) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
