import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { appliedKey } from '../../src/lib/cache-keys.js';
import { registerTags, tagKey } from '../../src/client/tags.js';
import type { KeyOperation } from '../../src/core/change.js';
import { escapeGlob } from '../../src/core/glob.js';
import { SinkUnavailableError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { RedisSink, type RedisSinkOptions } from '../../src/sinks/redis/redis-sink.js';
import type { SinkBatch } from '../../src/ports/sink.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** A client for the test's own reads and writes, closed after the test. */
function client(url: string, options: { keyPrefix?: string } = {}): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: 1, ...options });
  redis.on('error', () => undefined);
  cleanups.push(() => redis.disconnect());
  return redis;
}

async function connectedSink(options: Partial<RedisSinkOptions> & { url: string; keyPrefix: string }): Promise<RedisSink> {
  const sink = new RedisSink({ deleteCommand: 'unlink', logger: silentLogger(), ...options });
  cleanups.push(() => sink.close());
  await sink.connect();
  return sink;
}

/** Sets keys (full names) in pipelined chunks. */
async function seed(redis: Redis, keys: readonly (string | Buffer)[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 10_000) {
    const pipeline = redis.pipeline();
    for (const key of keys.slice(i, i + 10_000)) pipeline.set(key, 'cached');
    await pipeline.exec();
  }
}

async function countExisting(redis: Redis, keys: readonly string[]): Promise<number> {
  let n = 0;
  for (let i = 0; i < keys.length; i += 10_000) n += await redis.exists(...keys.slice(i, i + 10_000));
  return n;
}

/** How many times Redis ran a command, scripts' own calls included (INFO commandstats). */
async function commandCalls(redis: Redis, command: string): Promise<number> {
  const info = await redis.info('commandstats');
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return match === null ? 0 : Number(match[1]);
}

/** What the worker loop does: apply the whole batch again until it works. */
async function applyUntilDone(sink: RedisSink, batch: SinkBatch): Promise<number> {
  for (let failures = 0; ; failures++) {
    try {
      await sink.apply(batch);
      return failures;
    } catch (err) {
      expect(err).toBeInstanceOf(SinkUnavailableError);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

function timing(label: string, startedMs: number): void {
  if (process.env['TEST_LOG']) console.info(`${label}: ${(performance.now() - startedMs).toFixed(0)} ms`);
}

const batchOf = (...operations: KeyOperation[]): SinkBatch => ({ operations, deadLetters: [] });

describe.skipIf(servicesMissing('redis'))('redis sink', () => {
  it('invalidates a tag of 100,000 members in bounded steps: members and set gone', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const members = Array.from({ length: 100_000 }, (_, i) => `${prefix}item:${i}`);
    await seed(redis, [...members, `${prefix}other`]);
    for (let i = 0; i < members.length; i += 10_000) await redis.sadd(tagKey('big', prefix), ...members.slice(i, i + 10_000));
    await redis.sadd(tagKey('small', prefix), `${prefix}other`);
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    const spopsBefore = await commandCalls(redis, 'spop');

    const started = performance.now();
    await sink.apply(batchOf({ action: 'tag', tag: 'big' }, { action: 'tag', tag: 'big' }));
    timing('tag of 100,000 members', started);

    expect(await countExisting(redis, members)).toBe(0);
    expect(await redis.exists(tagKey('big', prefix))).toBe(0);
    expect(await redis.get(`${prefix}other`)).toBe('cached');
    expect(await redis.scard(tagKey('small', prefix))).toBe(1);
    // 1000 members per step: 100 full steps and one that finds the set gone. The duplicate tag
    // in the batch was dropped, not run a second time.
    expect((await commandCalls(redis, 'spop')) - spopsBefore).toBe(101);
  });

  it('takes as many steps as the step size asks for', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const members = Array.from({ length: 950 }, (_, i) => `${prefix}m:${i}`);
    await seed(redis, members);
    await redis.sadd(tagKey('t', prefix), ...members);
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix, tagStepSize: 100, deleteCommand: 'del' });
    const spopsBefore = await commandCalls(redis, 'spop');
    await sink.apply(batchOf({ action: 'tag', tag: 't' }));
    expect((await commandCalls(redis, 'spop')) - spopsBefore).toBe(10);
    expect(await countExisting(redis, members)).toBe(0);
    expect(await redis.exists(tagKey('t', prefix))).toBe(0);
  });

  it('deletes exactly the keys a pattern matches, with glob characters of values and prefix taken literally', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const base = uniqueName('k');
    // The prefix itself holds glob characters: unescaped, "[p]" would match "p".
    const prefix = `${base}:[p]:`;
    const value = 'a*';
    const matching = Array.from({ length: 10_000 }, (_, i) => `${prefix}cat:${value}:${i}`);
    const notMatching = [
      `${prefix}cat:ab:1`, // would match if the value's "*" were not escaped
      `${prefix}cat:a*`, // no ":" after the value
      `${prefix}cat:b:1`,
      `${base}:p:cat:a*:1`, // would match if the prefix's "[p]" were not escaped
      `${base}:[q]:cat:a*:1`,
    ];
    const binaryKey = Buffer.concat([Buffer.from(`${prefix}cat:${value}:`), Buffer.from([0xff, 0xfe])]);
    await seed(redis, [...matching, ...notMatching, binaryKey]);
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });

    const pattern = `cat:${escapeGlob(value)}:*`;
    const started = performance.now();
    await sink.apply(batchOf({ action: 'pattern', pattern }, { action: 'pattern', pattern }));
    timing(`pattern over 10,000 matching keys (keyspace ${await redis.dbsize()} keys after)`, started);

    expect(await countExisting(redis, matching)).toBe(0);
    expect(await redis.exists(binaryKey)).toBe(0);
    for (const key of notMatching) expect(await redis.exists(key), key).toBe(1);
  });

  it('publishes the keys, tags and patterns of an applied batch', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const subscriber = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const channel = `${prefix}invalidations`;
    const messages: string[] = [];
    subscriber.on('message', (ch: string, message: string) => {
      if (ch === channel) messages.push(message);
    });
    await subscriber.subscribe(channel);
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix, notifyChannel: channel });
    await seed(redis, [`${prefix}user:1`, `${prefix}user:2`]);

    await sink.apply(
      batchOf(
        { action: 'delete', key: 'user:1' },
        { action: 'delete', key: 'user:2' },
        { action: 'delete', key: 'user:1' },
        { action: 'bump', key: 'users:version', version: 42n },
        { action: 'tag', tag: 'team:3' },
        { action: 'pattern', pattern: 'search:*' },
      ),
    );
    await waitFor(() => messages.length === 1, { message: 'the notification' });
    expect(JSON.parse(messages[0]!)).toEqual({
      keys: [`${prefix}user:1`, `${prefix}user:2`, `${prefix}users:version`],
      tags: ['team:3'],
      patterns: [`${prefix}search:*`],
    });
    expect(await redis.exists(`${prefix}user:1`)).toBe(0);

    // A large batch arrives in messages of at most 1000 entries, all of them.
    messages.length = 0;
    const keys = Array.from({ length: 2500 }, (_, i) => `k:${i}`);
    await sink.apply(batchOf(...keys.map((key): KeyOperation => ({ action: 'delete', key }))));
    await waitFor(() => messages.length === 3, { message: 'three notifications' });
    const payloads = messages.map((m) => JSON.parse(m) as { keys: string[] });
    expect(payloads.map((p) => p.keys.length)).toEqual([1000, 1000, 500]);
    expect(payloads.flatMap((p) => p.keys)).toEqual(keys.map((k) => prefix + k));

    // Dead letters alone invalidate nothing: no message.
    const before = messages.length;
    await sink.apply({
      operations: [],
      deadLetters: [{ schema: 'public', table: 't', op: 'truncate', position: '0/1', reason: 'truncate', detail: 'd', key: null }],
    });
    await sink.apply(batchOf({ action: 'delete', key: 'marker' }));
    await waitFor(() => messages.length === before + 1, { message: 'the marker notification' });
    expect(JSON.parse(messages.at(-1)!)).toEqual({ keys: [`${prefix}marker`], tags: [], patterns: [] });
  });

  it('registerTags and a tag invalidation round trip', async () => {
    const server = await sharedRedis();
    const app = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    // The application fills its cache: the value, then its tags.
    await app.set(`${prefix}product:1`, '{"id":1}', 'EX', 600);
    await registerTags(app, `${prefix}product:1`, ['category:7', 'brand:2'], { keyPrefix: prefix, ttlSeconds: 600 });
    await app.set(`${prefix}product:2`, '{"id":2}', 'EX', 600);
    await registerTags(app, `${prefix}product:2`, ['category:8'], { keyPrefix: prefix, ttlSeconds: 600 });
    expect(await app.smembers(tagKey('category:7', prefix))).toEqual([`${prefix}product:1`]);
    expect(await app.ttl(tagKey('category:7', prefix))).toBeGreaterThan(590);

    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    await sink.apply(batchOf({ action: 'tag', tag: 'category:7' }));
    expect(await app.exists(`${prefix}product:1`, tagKey('category:7', prefix))).toBe(0);
    expect(await app.get(`${prefix}product:2`)).toBe('{"id":2}');
    expect(await app.scard(tagKey('category:8', prefix))).toBe(1);
    // The other tag still names the deleted key: harmless, it goes with that tag or the set's TTL.
    expect(await app.smembers(tagKey('brand:2', prefix))).toEqual([`${prefix}product:1`]);
  });

  it('registerTags never shortens a tag set TTL', async () => {
    const server = await sharedRedis();
    const app = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    await registerTags(app, 'a', ['long'], { keyPrefix: prefix, ttlSeconds: 1000 });
    await registerTags(app, 'b', ['long'], { keyPrefix: prefix, ttlSeconds: 10 });
    expect(await app.ttl(tagKey('long', prefix))).toBeGreaterThan(990);
    await registerTags(app, 'c', ['long'], { keyPrefix: prefix, ttlSeconds: 5000 });
    expect(await app.ttl(tagKey('long', prefix))).toBeGreaterThan(4990);
    await registerTags(app, 'a', ['forever'], { keyPrefix: prefix });
    await registerTags(app, 'b', ['forever'], { keyPrefix: prefix, ttlSeconds: 10 });
    expect(await app.ttl(tagKey('forever', prefix))).toBe(-1);
    expect(await app.scard(tagKey('forever', prefix))).toBe(2);
    await expect(registerTags(app, 'a', ['x'], { ttlSeconds: 0 })).rejects.toThrow(RangeError);
  });

  it('registerTags with an ioredis keyPrefix client stores the full key name', async () => {
    const server = await sharedRedis();
    const prefix = `${uniqueName('k')}:`;
    const app = client(server.url(), { keyPrefix: prefix });
    const raw = client(server.url());
    await app.set('user:1', 'cached');
    await registerTags(app, 'user:1', ['team:1']);
    expect(await raw.smembers(`${prefix}tag:team:1`)).toEqual([`${prefix}user:1`]);
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    await sink.apply(batchOf({ action: 'tag', tag: 'team:1' }));
    expect(await raw.exists(`${prefix}user:1`, `${prefix}tag:team:1`)).toBe(0);
  });

  it('applies deletes (with leases), bumps, increments, position and dead letters as one script call', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix, leasePrefix: 'lease:' });
    // More keys than one DEL inside the script takes, leases included.
    const keys = Array.from({ length: 1_200 }, (_, i) => `user:${i}`);
    await seed(redis, [...keys.map((k) => prefix + k), ...keys.map((k) => `lease:${prefix}${k}`), `${prefix}keep`]);
    await redis.set(`${prefix}v:big`, '18446744073709551615');
    const evalsBefore = await commandCalls(redis, 'evalsha');
    const multisBefore = await commandCalls(redis, 'multi');
    await sink.apply({
      operations: [
        ...keys.map((key): KeyOperation => ({ action: 'delete', key })),
        { action: 'bump', key: 'v:new', version: 5n },
        { action: 'bump', key: 'v:big', version: 18446744073709551614n },
        { action: 'bump', key: 'v:count', version: null },
      ],
      deadLetters: [{ schema: 'public', table: 't', op: 'truncate', position: '0/1', reason: 'truncate', detail: 'd', key: null }],
      appliedPosition: '0/10',
    });
    expect(await commandCalls(redis, 'evalsha')).toBe(evalsBefore + 1);
    expect(await commandCalls(redis, 'multi')).toBe(multisBefore);
    expect(await countExisting(redis, [...keys.map((k) => prefix + k), ...keys.map((k) => `lease:${prefix}${k}`)])).toBe(0);
    expect(await redis.exists(`${prefix}keep`)).toBe(1);
    expect(await redis.get(`${prefix}v:new`)).toBe('5');
    // Never moved back, though smaller only in its last digit beyond 2^64.
    expect(await redis.get(`${prefix}v:big`)).toBe('18446744073709551615');
    expect(await redis.get(`${prefix}v:count`)).toBe('1');
    expect(await redis.get(appliedKey(prefix))).toBe('0/10');
    const letters = await redis.xrange(`${prefix}cdc-invalidator:dead-letters`, '-', '+');
    expect(letters).toHaveLength(1);
    expect(letters[0]![1]).toEqual(['table', 'public.t', 'op', 'truncate', 'position', '0/1', 'reason', 'truncate', 'detail', 'd', 'key', '']);
  });

  it('a key of the wrong type fails the batch after every other step was applied, like EXEC', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    await seed(redis, [`${prefix}a`, `${prefix}b`]);
    await redis.sadd(`${prefix}v:set`, 'x');
    const batch: SinkBatch = {
      operations: [
        { action: 'delete', key: 'a' },
        { action: 'bump', key: 'v:set', version: 3n },
        { action: 'bump', key: 'v:ok', version: 4n },
        { action: 'delete', key: 'b' },
      ],
      deadLetters: [],
      appliedPosition: '0/20',
    };
    await expect(sink.apply(batch)).rejects.toThrow(/WRONGTYPE/);
    expect(await countExisting(redis, [`${prefix}a`, `${prefix}b`])).toBe(0);
    expect(await redis.get(`${prefix}v:ok`)).toBe('4');
    expect(await redis.get(appliedKey(prefix))).toBe('0/20');
    await redis.del(`${prefix}v:set`);
    await sink.apply(batch);
    expect(await redis.get(`${prefix}v:set`)).toBe('3');
  });

  it('stores the applied position with a batch, never moving it back, compared as numbers', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    const applied = () => redis.get(`${prefix}cdc-invalidator:applied`);
    await seed(redis, [`${prefix}a`]);
    await sink.apply({ operations: [{ action: 'delete', key: 'a' }], deadLetters: [], appliedPosition: '0/A0' });
    expect(await applied()).toBe('0/A0');
    expect(await redis.exists(`${prefix}a`)).toBe(0);
    // "0/FF" > "0/A0", and "1/0" > "0/FF": as numbers, not as text.
    await sink.apply({ operations: [], deadLetters: [], appliedPosition: '0/FF' });
    expect(await applied()).toBe('0/FF');
    await sink.apply({ operations: [], deadLetters: [], appliedPosition: '1/0' });
    expect(await applied()).toBe('1/0');
    // A batch applied again after a retry, or an older one, leaves it where it is.
    await sink.apply({ operations: [], deadLetters: [], appliedPosition: '0/FFFFFFFF' });
    expect(await applied()).toBe('1/0');
    await sink.apply({ operations: [], deadLetters: [], appliedPosition: 'A/0' });
    await sink.apply({ operations: [], deadLetters: [], appliedPosition: '9/FFFFFFFF' });
    expect(await applied()).toBe('A/0');
    // With tags and patterns the position is stored after them, once everything is gone.
    await seed(redis, [`${prefix}m1`, `${prefix}p:1`]);
    await redis.sadd(tagKey('t', prefix), `${prefix}m1`);
    await sink.apply({ operations: [{ action: 'tag', tag: 't' }, { action: 'pattern', pattern: 'p:*' }], deadLetters: [], appliedPosition: 'A/10' });
    expect(await applied()).toBe('A/10');
    expect(await countExisting(redis, [`${prefix}m1`, `${prefix}p:1`])).toBe(0);
  });

  it('loads its scripts again after SCRIPT FLUSH', async () => {
    const server = await sharedRedis();
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix });
    await sink.apply(batchOf({ action: 'bump', key: 'v', version: 1n }, { action: 'tag', tag: 't' }));
    await redis.script('FLUSH');
    // Outside a transaction, the tag step reloads at once.
    await redis.sadd(tagKey('t', prefix), `${prefix}x`);
    await sink.apply(batchOf({ action: 'tag', tag: 't' }));
    expect(await redis.exists(tagKey('t', prefix))).toBe(0);
    await redis.script('FLUSH');
    // Inside the MULTI the bump fails once, and the retry loads it.
    expect(await applyUntilDone(sink, batchOf({ action: 'bump', key: 'v', version: 2n }))).toBeLessThanOrEqual(1);
    expect(await redis.get(`${prefix}v`)).toBe('2');
  });
});

describe.skipIf(servicesMissing('redis'))('redis sink when Redis dies in the middle of a batch', () => {
  it('is retried and completes: deletes, tags and patterns all applied, nothing else touched', { timeout: 120_000 }, async () => {
    // Its own Redis, writing every command to the AOF before answering, so that what was applied
    // before the kill survives it, as it would on a production server with persistence.
    const server = await RedisServer.start({ args: ['--appendonly', 'yes', '--appendfsync', 'always'] });
    cleanups.push(() => server.destroy());
    const redis = client(server.url());
    const prefix = `${uniqueName('k')}:`;
    const direct = Array.from({ length: 2000 }, (_, i) => `${prefix}user:${i}`);
    const tagged = Array.from({ length: 30_000 }, (_, i) => `${prefix}item:${i}`);
    const scanned = Array.from({ length: 5000 }, (_, i) => `${prefix}search:${i}`);
    const untouched = [`${prefix}keep:1`, `${prefix}searc:1`, `${prefix}item`];
    await seed(redis, [...direct, ...tagged, ...scanned, ...untouched]);
    for (let i = 0; i < tagged.length; i += 10_000) await redis.sadd(tagKey('all', prefix), ...tagged.slice(i, i + 10_000));

    const sink = await connectedSink({ url: server.url(), keyPrefix: prefix, tagStepSize: 50, commandTimeoutMs: 2_000 });
    const batch = batchOf(
      ...direct.map((key): KeyOperation => ({ action: 'delete', key: key.slice(prefix.length) })),
      { action: 'bump', key: 'users:version', version: 77n },
      { action: 'tag', tag: 'all' },
      { action: 'pattern', pattern: 'search:*' },
    );
    const applying = applyUntilDone(sink, batch);
    // Kill it once the tag is partly done: the transaction has landed, the tag steps are running.
    const leftAtKill = await waitFor(
      async () => {
        const left = await redis.scard(tagKey('all', prefix));
        return left > 0 && left < tagged.length - 1000 ? left : null;
      },
      { intervalMs: 5, timeoutMs: 30_000, message: 'the tag invalidation to be under way' },
    );
    await server.kill();
    await server.restart();
    const failures = await applying;

    expect(leftAtKill).toBeGreaterThan(0);
    expect(failures).toBeGreaterThan(0);
    const check = client(server.url());
    expect(await countExisting(check, direct)).toBe(0);
    expect(await countExisting(check, tagged)).toBe(0);
    expect(await check.exists(tagKey('all', prefix))).toBe(0);
    expect(await countExisting(check, scanned)).toBe(0);
    expect(await check.get(`${prefix}users:version`)).toBe('77');
    for (const key of untouched) expect(await check.exists(key), key).toBe(1);
  });
});
