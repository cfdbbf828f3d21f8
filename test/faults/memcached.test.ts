// The worker on memcached under faults: `node dist/cli.js run` killed -9 again and again while it drains a
// backlog, and one of the two memcached servers frozen for seconds mid-stream. Nothing is acknowledged
// to PostgreSQL before memcached applied it, so every key is deleted in the end.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KetamaRing } from '../../src/lib/memcached/ketama.js';
import { MetaConnection } from '../../src/lib/memcached/meta-connection.js';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';
import { MemcachedServer } from '../harness/memcached.js';
import { createTestDatabase, servicesMissing, sharedPostgres, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { recordResult } from './reliability.js';

const ROWS = 50_000;
const KILLS = 5;

const cleanups: Array<() => Promise<void> | void> = [];
afterAll(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe.skipIf(servicesMissing('postgres', 'memcached'))('memcached under faults', () => {
  it(`loses nothing when the worker is killed -9 ${KILLS} times while draining ${ROWS} changes and a memcached server freezes for 3 s`, { timeout: 300_000 }, async () => {
    const servers = await Promise.all([MemcachedServer.start(), MemcachedServer.start()]);
    cleanups.push(() => Promise.all(servers.map((s) => s.destroy())).then(() => undefined));
    const pg = await sharedPostgres();
    const db = await createTestDatabase('mcf');
    await pg.query(`CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL); INSERT INTO items SELECT i, 0 FROM generate_series(1, ${ROWS}) i`, [], db.name);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-mcf-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    mkdirSync(join(dir, 'mappings'));
    writeFileSync(join(dir, 'mappings', 'items.yaml'), 'rules:\n  - table: items\n    invalidate: ["item:{id}"]\n');
    const prefix = `${uniqueName('f')}:`;
    const slot = uniqueName('slot');
    const config = join(dir, 'cdc-invalidator.yaml');
    writeFileSync(
      config,
      `source:\n  kind: postgres\n  url: "${db.url}"\n  slot: ${slot}\n  publication: ${uniqueName('pub')}\n  heartbeatSeconds: 1\n` +
        `memcached:\n  servers: [${servers.map((s) => s.address).join(', ')}]\n  keyPrefix: "${prefix}"\n  commandTimeoutMs: 500\nmappings: ./mappings\nbatch:\n  maxChanges: 200\nhttp:\n  port: 0\n`,
    );
    cleanups.push(() => pg.query('SELECT pg_drop_replication_slot($1) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active', [slot]).then(() => undefined, () => undefined));

    const ring = new KetamaRing(servers.map((s) => s.address));
    const connections = servers.map((s) => new MetaConnection({ host: '127.0.0.1', port: s.port, timeoutMs: 5_000 }));
    cleanups.push(() => connections.forEach((c) => c.close()));
    const keys = Array.from({ length: ROWS }, (_, i) => `${prefix}item:${i + 1}`);
    const byServer = (list: readonly string[]) => connections.map((_, s) => list.filter((key) => ring.indexFor(key) === s));
    const left = async () => {
      const counts = await Promise.all(byServer(keys).map(async (list, s) => (await connections[s]!.request(list.map((key) => ({ verb: 'mg' as const, key, flags: [] })))).filter((r) => r.code === 'HD').length));
      return counts.reduce((a, b) => a + b, 0);
    };
    await Promise.all(byServer(keys).map((list, s) => connections[s]!.request(list.map((key) => ({ verb: 'ms' as const, key, flags: ['T0'], value: Buffer.from('cached') })))));
    expect(await left()).toBe(ROWS);

    let worker: WorkerProcess | undefined;
    const started = (w: WorkerProcess) => waitFor(() => w.output().includes('replication started'), { timeoutMs: 30_000, message: 'the worker started' });
    const start = async (wait = true) => {
      const w = spawnCli(['run', '--config', config]);
      worker = w;
      cleanups.push(async () => {
        if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
        await w.exited;
      });
      if (wait) await started(w);
    };
    // The slot first (the worker creates it), then the backlog while no worker runs: one change per row,
    // in transactions of 1,000 rows.
    await start();
    worker!.child.kill('SIGKILL');
    await worker!.exited;
    for (let from = 1; from <= ROWS; from += 1_000) {
      await pg.query('UPDATE items SET v = v + 1 WHERE id BETWEEN $1 AND $2', [from, from + 999], db.name);
    }
    await start();
    const killLog: Array<{ kill: number; keysLeft: number }> = [];
    let frozenRun: WorkerProcess | undefined;
    for (let kill = 1; kill <= KILLS; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 20 + kill * 20));
      worker!.child.kill('SIGKILL');
      await worker!.exited;
      killLog.push({ kill, keysLeft: await left() });
      if (kill === 3) {
        // One server frozen while the worker starts again and drains: batches fail, are retried, nothing is acknowledged.
        await servers[1]!.pause();
        await start(false);
        frozenRun = worker;
        await new Promise((resolve) => setTimeout(resolve, 3_000));
        await servers[1]!.resume();
        await started(worker!);
      } else {
        await start();
      }
    }
    const lastStart = Date.now();
    let lost = ROWS;
    try {
      await waitFor(async () => (lost = await left()) === 0, { timeoutMs: 120_000, intervalMs: 200, message: 'every key deleted' });
    } finally {
      recordResult({
        id: '13',
        title: 'memcached: worker kill -9 while draining, a server frozen 3 s',
        runs: KILLS + 1,
        changes: ROWS,
        lost,
        duplicated: null,
        recoverySeconds: Math.round((Date.now() - lastStart) / 100) / 10,
        notes: `two memcached servers (ketama); keys left at each kill: ${killLog.map((k) => k.keysLeft).join(', ')}; the third restart met one server frozen (SIGSTOP) for 3 s`,
      });
    }
    const output = worker!.output();
    console.log(JSON.stringify({ fault: 'memcached: worker kill -9 and a frozen server', rows: ROWS, killLog }));
    expect(killLog.some((k) => k.keysLeft > 0)).toBe(true);
    expect(output).not.toMatch(/dead letter/);
    // The frozen server, named in the worker's own words.
    expect(frozenRun!.output()).toMatch(/memcached (not reachable|apply failed); retrying/);
    expect(frozenRun!.output()).toContain(servers[1]!.address);
  });
});
