// The memcached sink against real memcached servers (Debian's 1.6 package, started by the harness).
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { gatherMemcachedFacts, memcachedChecks } from '../../src/commands/check/memcached-checks.js';
import { loadConfig } from '../../src/config/load.js';
import { SinkUnavailableError } from '../../src/errors.js';
import { KetamaRing } from '../../src/lib/memcached/ketama.js';
import { MetaConnection, type MetaReply } from '../../src/lib/memcached/meta-connection.js';
import { silentLogger } from '../../src/log.js';
import { buildWorker } from '../../src/main.js';
import { MemcachedSink, type MemcachedSinkOptions } from '../../src/sinks/memcached/memcached-sink.js';
import { MemcachedServer } from '../harness/memcached.js';
import { createTestDatabase, servicesMissing, sharedPostgres, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

let servers: Promise<[MemcachedServer, MemcachedServer]> | undefined;
/** Two servers for the file, so that keys spread over both. */
async function twoServers(): Promise<[MemcachedServer, MemcachedServer]> {
  servers ??= Promise.all([MemcachedServer.start(), MemcachedServer.start()]);
  return await servers;
}
afterAll(async () => {
  const started = await servers?.catch(() => undefined);
  await Promise.all((started ?? []).map((s) => s.destroy()));
});

/** The test's own connection to each server, for reads and writes behind the sink's back. */
function direct(server: MemcachedServer): MetaConnection {
  const connection = new MetaConnection({ host: '127.0.0.1', port: server.port, timeoutMs: 2_000 });
  cleanups.push(() => connection.close());
  return connection;
}

async function sinkOn(list: readonly MemcachedServer[], options: Partial<MemcachedSinkOptions> = {}): Promise<MemcachedSink> {
  const sink = new MemcachedSink({
    servers: list.map((s) => s.address),
    keyPrefix: '',
    invalidation: 'delete',
    staleTtlSeconds: 30,
    commandTimeoutMs: 500,
    logger: silentLogger(),
    ...options,
  });
  cleanups.push(() => sink.close());
  await sink.connect();
  return sink;
}

/** Sets keys on the servers the ring puts them on, as an application's ketama client would. */
async function seed(list: readonly MemcachedServer[], keys: readonly string[], value = 'cached', ttl = 0): Promise<void> {
  const ring = new KetamaRing(list.map((s) => s.address));
  const connections = list.map(direct);
  const replies = await Promise.all(keys.map((key) => connections[ring.indexFor(key)]!.request([{ verb: 'ms', key, flags: [`T${ttl}`], value: Buffer.from(value) }])));
  expect(replies.flat().map((r) => r.code)).toEqual(keys.map(() => 'HD'));
}

async function get(list: readonly MemcachedServer[], key: string, flags = ['v']): Promise<MetaReply> {
  const ring = new KetamaRing(list.map((s) => s.address));
  const [reply] = await direct(list[ring.indexFor(key)]!).request([{ verb: 'mg', key, flags }]);
  return reply!;
}

describe.skipIf(servicesMissing('memcached'))('memcached sink', () => {
  it('deletes the keys of a batch on the server ketama puts each on, keys with spaces and other bytes too', async () => {
    const list = await twoServers();
    const prefix = `${uniqueName('md')}:`;
    const keys = Array.from({ length: 300 }, (_, i) => (i % 3 === 0 ? `comments:name=Ada Lovelace ${i}` : i % 3 === 1 ? `user:${i}` : `ü:${i}`));
    await seed(list, keys.map((k) => prefix + k));
    const sink = await sinkOn(list, { keyPrefix: prefix });
    await sink.apply({ operations: keys.filter((_, i) => i % 2 === 0).map((key) => ({ action: 'delete', key })), deadLetters: [] });
    const codes = await Promise.all(keys.map(async (key) => (await get(list, prefix + key)).code));
    expect(codes.filter((c, i) => i % 2 === 0 && c !== 'EN')).toEqual([]);
    expect(codes.filter((c, i) => i % 2 === 1 && c !== 'VA')).toEqual([]);
    // Both servers held some: the ring spreads them.
    const ring = new KetamaRing(list.map((s) => s.address));
    expect(new Set(keys.map((k) => ring.indexFor(prefix + k))).size).toBe(2);
    // A key longer than memcached allows cannot hold anything: nothing to delete, no failure.
    await sink.apply({ operations: [{ action: 'delete', key: 'k'.repeat(300) }], deadLetters: [] });
  });

  it('mark-stale: the item stays, stale, with a new CAS; the next reader wins its refill, the others are served stale', async () => {
    const list = await twoServers();
    const key = `${uniqueName('stale')}:user:1`;
    await seed(list, [key], 'old row');
    const before = await get(list, key, ['v', 'c']);
    const sink = await sinkOn(list, { invalidation: 'mark-stale', staleTtlSeconds: 30 });
    await sink.apply({ operations: [{ action: 'delete', key }], deadLetters: [] });
    const first = await get(list, key, ['v', 'c']);
    const second = await get(list, key, ['v', 'c']);
    expect(first.value?.toString()).toBe('old row');
    expect(first.flags).toEqual(expect.arrayContaining(['X', 'W']));
    expect(second.flags).toEqual(expect.arrayContaining(['X', 'Z']));
    expect(first.flags.find((f) => f.startsWith('c'))).not.toBe(before.flags.find((f) => f.startsWith('c')));
  });

  it('bumps version keys only upwards, keeping their expiry, whoever else writes them meanwhile', async () => {
    const list = await twoServers();
    const prefix = `${uniqueName('ver')}:`;
    const sink = await sinkOn(list, { keyPrefix: prefix });
    const bump = (key: string, version: bigint | null) => sink.apply({ operations: [{ action: 'bump', key, version }], deadLetters: [] });
    await bump('users:version', 10n);
    expect((await get(list, `${prefix}users:version`)).value?.toString()).toBe('10');
    await bump('users:version', 5n); // a batch applied again after a restart
    expect((await get(list, `${prefix}users:version`)).value?.toString()).toBe('10');
    await bump('users:version', 123456789012345678901234567890n);
    expect((await get(list, `${prefix}users:version`)).value?.toString()).toBe('123456789012345678901234567890');
    // An expiry the application set stays.
    await seed(list, [`${prefix}posts:version`], '1', 600);
    await bump('posts:version', 7n);
    const withTtl = await get(list, `${prefix}posts:version`, ['v', 't']);
    expect(withTtl.value?.toString()).toBe('7');
    expect(Number(withTtl.flags.find((f) => f.startsWith('t'))!.slice(1))).toBeGreaterThan(500);
    // Several workers (or a retry beside a live batch) bumping the same key at once: the greatest wins.
    const others = await Promise.all([sinkOn(list, { keyPrefix: prefix }), sinkOn(list, { keyPrefix: prefix }), sinkOn(list, { keyPrefix: prefix })]);
    const versions = Array.from({ length: 60 }, (_, i) => BigInt(1000 + ((i * 7919) % 997)));
    await Promise.all(versions.map((v, i) => others[i % 3]!.apply({ operations: [{ action: 'bump', key: 'hot:version', version: v }], deadLetters: [] })));
    expect((await get(list, `${prefix}hot:version`)).value?.toString()).toBe(String(versions.reduce((a, b) => (a > b ? a : b))));
    // A source without positions: counters, created at 1.
    await bump('events:version', null);
    await bump('events:version', null);
    expect((await get(list, `${prefix}events:version`)).value?.toString()).toBe('2');
  });

  it('stores the applied position, never moving it back', async () => {
    const list = await twoServers();
    const prefix = `${uniqueName('pos')}:`;
    const sink = await sinkOn(list, { keyPrefix: prefix });
    const store = (position: string) => sink.apply({ operations: [], deadLetters: [], appliedPosition: position });
    await store('0/16B3748');
    await store('0/16B3000');
    expect((await get(list, `${prefix}cdc-invalidator:applied`)).value?.toString()).toBe('0/16B3748');
    await store('A/0');
    await store('9/FFFFFFFF');
    expect((await get(list, `${prefix}cdc-invalidator:applied`)).value?.toString()).toBe('A/0');
  });

  it('a server killed or frozen fails the batch, naming it; once it is back the same batch applies', async () => {
    const [a, b] = await Promise.all([MemcachedServer.start(), MemcachedServer.start()]);
    cleanups.push(() => a.destroy(), () => b.destroy());
    const sink = await sinkOn([a, b], { commandTimeoutMs: 300 });
    const keys = Array.from({ length: 50 }, (_, i) => `k${i}`);
    const batch = { operations: keys.map((key) => ({ action: 'delete' as const, key })), deadLetters: [] };
    await a.kill();
    const killed = await sink.apply(batch).then(() => null, (err: unknown) => err);
    expect(killed).toBeInstanceOf(SinkUnavailableError);
    expect(String(killed)).toContain(a.address);
    expect(sink.isConnected()).toBe(false);
    await a.restart();
    await seed([a, b], keys);
    await sink.apply(batch);
    expect(sink.isConnected()).toBe(true);
    expect((await Promise.all(keys.map(async (k) => (await get([a, b], k)).code))).every((c) => c === 'EN')).toBe(true);

    await seed([a, b], keys);
    await b.pause();
    const frozen = await sink.apply(batch).then(() => null, (err: unknown) => err);
    await b.resume();
    expect(frozen).toBeInstanceOf(SinkUnavailableError);
    expect(String(frozen)).toMatch(new RegExp(`${b.address} did not answer within 300 ms`));
    await sink.apply(batch);
    expect((await Promise.all(keys.map(async (k) => (await get([a, b], k)).code))).every((c) => c === 'EN')).toBe(true);
  });
});

describe.skipIf(servicesMissing('memcached'))('check on memcached', () => {
  it('reaches every server, says its version and that it speaks meta, and fails one that is down', async () => {
    const list = await twoServers();
    const down = `127.0.0.1:${(await MemcachedServer.start().then(async (s) => (await s.destroy(), s.port)))}`;
    const facts = await gatherMemcachedFacts([...list.map((s) => s.address), down], 1_000);
    const lines = memcachedChecks(facts);
    expect(lines.slice(0, 2)).toEqual(list.map((s) => ({ status: 'ok', text: expect.stringMatching(new RegExp(`^memcached ${s.address}: version 1\\.6\\.\\d+, meta protocol$`)) })));
    expect(lines[2]).toMatchObject({ status: 'fail', text: expect.stringContaining(`memcached ${down}: unreachable`) });
  });
});

describe.skipIf(servicesMissing('postgres', 'memcached'))('the worker on memcached', () => {
  it('a committed change deletes its keys in memcached, with the config changed and nothing else', async () => {
    const list = await twoServers();
    const pg = await sharedPostgres();
    const db = await createTestDatabase('mc');
    await pg.query('CREATE TABLE users (id int PRIMARY KEY, name text, email text); ALTER TABLE users REPLICA IDENTITY FULL; INSERT INTO users VALUES (1, $$Ada$$, $$ada@example.com$$)', [], db.name);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-mc-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'users.yaml'), 'rules:\n  - table: users\n    invalidate: ["user:{id}", "user:email:{email}"]\n    bump: ["users:version"]\n');
    const prefix = `${uniqueName('w')}:`;
    writeFileSync(
      join(dir, 'cdc-invalidator.yaml'),
      `source:\n  kind: postgres\n  url: "${db.url}"\n  slot: ${uniqueName('slot')}\n  publication: ${uniqueName('pub')}\n  heartbeatSeconds: 1\n` +
        `memcached:\n  servers: [${list.map((s) => s.address).join(', ')}]\n  keyPrefix: "${prefix}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
    );
    const loaded = await loadConfig(join(dir, 'cdc-invalidator.yaml'), {});
    const assembly = buildWorker(loaded, silentLogger());
    cleanups.push(async () => {
      await assembly.worker.stop();
      await assembly.http.close();
      await pg.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active', [db.name]).catch(() => undefined);
    });
    await assembly.worker.start();
    await seed(list, [`${prefix}user:1`, `${prefix}user:email:ada@example.com`, `${prefix}user:email:ada@lovelace.org`]);
    await pg.query(`UPDATE users SET email = 'ada@lovelace.org' WHERE id = 1`, [], db.name);
    await waitFor(async () => (await get(list, `${prefix}user:1`)).code === 'EN', { timeoutMs: 20_000, message: 'user:1 deleted from memcached' });
    expect((await get(list, `${prefix}user:email:ada@example.com`)).code).toBe('EN');
    expect((await get(list, `${prefix}user:email:ada@lovelace.org`)).code).toBe('EN');
    await waitFor(async () => (await get(list, `${prefix}cdc-invalidator:applied`)).code === 'VA', { timeoutMs: 20_000, message: 'the applied position stored' });
    expect(Number((await get(list, `${prefix}users:version`)).value?.toString())).toBeGreaterThan(0);
  });
});
