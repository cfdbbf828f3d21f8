import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresServer } from '../harness/postgres.js';
import { servicesMissing, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { runCli, spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { recordResult } from './reliability.js';

/**
 * Scenario 9: the slot loses WAL while the worker is away (max_slot_wal_keep_size exceeded).
 * The worker must never go on silently: by default it exits with instructions; with
 * `source.slotLost: recover` it runs every rule's fallback, recreates the slot and streams on.
 */
let pg: PostgresServer;
beforeAll(async () => {
  if (servicesMissing('postgres', 'redis')) return;
  pg = await PostgresServer.start({ settings: { max_slot_wal_keep_size: '1MB', min_wal_size: '32MB', max_wal_size: '64MB' } });
});
afterAll(async () => {
  await pg?.destroy();
});

describe.skipIf(servicesMissing('postgres', 'redis'))('a replication slot that lost WAL', () => {
  it('is never streamed on silently: fail stops with instructions, recover runs the fallbacks and recreates it', { timeout: 180_000 }, async () => {
    const redisServer = await sharedRedis();
    const redis = new Redis(redisServer.url());
    const db = uniqueName('db');
    const url = await pg.createDatabase(db);
    await pg.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL DEFAULT 0); INSERT INTO items (id) SELECT generate_series(1, 10)`, [], db);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-slotlost-'));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(
      join(dir, 'mappings', 'items.yaml'),
      `rules:\n  - table: items\n    invalidate: ["item:{id}"]\n    fallback:\n      invalidate: ["items:all"]\n      bump: ["items:version"]\n`,
    );
    const slot = uniqueName('slot');
    const prefix = `${uniqueName('k')}:`;
    const config = (slotLost: string) => {
      const file = join(dir, `${slotLost}.yaml`);
      writeFileSync(
        file,
        `source:\n  kind: postgres\n  url: "${url}"\n  slot: ${slot}\n  publication: ${uniqueName('pub')}\n  slotLost: ${slotLost}\n` +
          `redis:\n  url: "${redisServer.url()}"\n  keyPrefix: "${prefix}"\nmappings: ./mappings\nhttp:\n  port: 0\n`,
      );
      return file;
    };
    const keyGone = (key: string) => waitFor(async () => (await redis.exists(prefix + key)) === 0, { timeoutMs: 30_000, message: `${key} not invalidated` });

    // 1. A worker streams normally, then stops.
    let worker: WorkerProcess = spawnCli(['run', '--config', config('fail')]);
    await waitFor(() => worker.output().includes('replication started'), { timeoutMs: 30_000, message: 'no start' });
    await redis.set(`${prefix}item:1`, 'x');
    await pg.query(`UPDATE items SET v = 1 WHERE id = 1`, [], db);
    await keyGone('item:1');
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);

    // 2. While it is away, a change it will never see, and enough WAL elsewhere to lose it.
    await redis.set(`${prefix}item:2`, 'x');
    await redis.set(`${prefix}items:all`, 'x');
    await pg.query(`UPDATE items SET v = 1 WHERE id = 2`, [], db);
    await pg.query(`CREATE TABLE churn (id serial, pad text)`, [], db);
    await waitFor(
      async () => {
        await pg.query(`INSERT INTO churn (pad) SELECT repeat('x', 1000) FROM generate_series(1, 20000); SELECT pg_switch_wal(); CHECKPOINT;`, [], db);
        const [row] = await pg.query<{ wal_status: string }>(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
        return row?.wal_status === 'lost';
      },
      { timeoutMs: 90_000, intervalMs: 100, message: 'the slot never lost its WAL' },
    );

    // 3. Default: refuse, exit 1, say what happened and what to do.
    const refused = await runCli(['run', '--config', config('fail')]);
    expect(refused.code).toBe(1);
    expect(refused.output).toContain('has lost WAL it needed');
    expect(refused.output).toContain('slotLost: recover');
    expect(await redis.exists(`${prefix}items:all`)).toBe(1);

    // 4. recover: the fallbacks run (the lost change is covered), a new slot streams on.
    const started = Date.now();
    worker = spawnCli(['run', '--config', config('recover')]);
    await keyGone('items:all');
    expect(await redis.get(`${prefix}items:version`)).toMatch(/^\d+$/);
    await waitFor(() => worker.output().includes('replication started'), { timeoutMs: 30_000, message: 'no start after recovery' });
    const recoverySeconds = (Date.now() - started) / 1000;
    expect(worker.output()).toContain('replication slot lost changes; recovering as configured');
    await redis.set(`${prefix}item:3`, 'x');
    await pg.query(`UPDATE items SET v = 1 WHERE id = 3`, [], db);
    await keyGone('item:3');
    const [row] = await pg.query<{ wal_status: string }>(`SELECT wal_status FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
    expect(row?.wal_status).not.toBe('lost');
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    redis.disconnect();

    recordResult({
      id: '9',
      title: 'Slot lost WAL while the worker was away',
      runs: 2,
      changes: 3,
      lost: 0,
      duplicated: null,
      recoverySeconds: Math.round(recoverySeconds * 10) / 10,
      notes: 'slotLost: fail exits 1 with instructions; recover runs every fallback, recreates the slot, streams on',
    });
  });
});
