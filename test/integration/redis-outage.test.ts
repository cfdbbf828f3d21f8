import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { silentLogger } from '../../src/log.js';
import { buildWorker } from '../../src/main.js';
import { PostgresServer } from '../harness/postgres.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

/**
 * A worker blocked on Redis for longer than wal_sender_timeout must keep its replication
 * connection: it keeps sending status updates with the applied position while it retries.
 * This file runs its own Postgres with a 2 s timeout to make that quick to see.
 */
let pg: PostgresServer;
beforeAll(async () => {
  if (servicesMissing('postgres', 'redis')) return;
  pg = await PostgresServer.start({ walSenderTimeout: '2s' });
});
afterAll(async () => {
  await pg?.destroy();
});

describe.skipIf(servicesMissing('postgres', 'redis'))('a Redis outage longer than wal_sender_timeout', () => {
  it('keeps the replication connection, confirms nothing unapplied, and catches up', { timeout: 90_000 }, async () => {
    const redisServer = await sharedRedis();
    const db = uniqueName('db');
    const url = await pg.createDatabase(db);
    await pg.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0)`, [], db);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-outage-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'm.yaml'), `rules:\n  - table: items\n    invalidate: ["item:{id}"]\n    bump: ["items:version"]\n`);
    const slot = uniqueName('slot');
    const prefix = `${uniqueName('k')}:`;
    writeFileSync(
      join(dir, 'c.yaml'),
      `source:\n  kind: postgres\n  url: "${url}"\n  slot: ${slot}\n  publication: ${uniqueName('pub')}\nredis:\n  url: "${redisServer.url()}"\n  keyPrefix: "${prefix}"\nmappings: ./mappings\n`,
    );
    const { worker, stats } = buildWorker(await loadConfig(join(dir, 'c.yaml'), {}), silentLogger());
    await worker.start();
    const walsenderPid = async () =>
      (await pg.query<{ pid: number | null }>(`SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = $1`, [slot]))[0]?.pid ?? null;
    const pidBefore = await waitFor(walsenderPid, { timeoutMs: 10_000, message: 'slot never became active' });
    const confirmed = async () =>
      BigInt((await pg.query<{ c: string }>(`SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot]))[0]!.c);

    await redisServer.kill();
    // More than the worker buffers: it pauses the socket, so it no longer reads (or answers) the
    // server's keepalives, and only its own status updates keep the connection.
    await pg.query(`INSERT INTO items (id) SELECT generate_series(1, 30000)`, [], db);
    const confirmedAtOutage = await confirmed();
    // Three timeouts' worth of outage.
    await new Promise((r) => setTimeout(r, 7_000));
    expect(stats.retries).toBeGreaterThan(0);
    expect(await walsenderPid()).toBe(pidBefore);
    // The insert is not applied: the slot must not have confirmed it.
    const [{ lsn }] = (await pg.query<{ lsn: string }>(`SELECT (pg_current_wal_insert_lsn() - '0/0')::text AS lsn`, [], db)) as [{ lsn: string }];
    expect(await confirmed()).toBeLessThan(BigInt(lsn));
    // The slot may have advanced into the WAL of the insert while it was being written (keepalives
    // of an idle stream), but never to its commit: checked below against the commit LSN.
    const confirmedDuringOutage = await confirmed();

    await redisServer.restart();
    const redis = new Redis(redisServer.url());
    await waitFor(async () => (await redis.get(`${prefix}items:version`)) !== null, { timeoutMs: 30_000, message: 'not applied after Redis came back' });
    const commitLsn = BigInt((await redis.get(`${prefix}items:version`))!);
    expect(confirmedDuringOutage).toBeLessThan(commitLsn);
    expect(confirmedAtOutage).toBeLessThan(commitLsn);
    await waitFor(async () => (await confirmed()) > confirmedAtOutage, { timeoutMs: 10_000, message: 'slot not confirmed after catching up' });
    expect(await walsenderPid()).toBe(pidBefore);
    redis.disconnect();
    await worker.stop();
  });
});
