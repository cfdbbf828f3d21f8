import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { Redis } from 'ioredis';
import { PostgresServer } from '../harness/postgres.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { metricValue } from './binary-worker.js';
import { ApplyCounter, recordResult } from './reliability.js';
import {
  alive,
  httpGet,
  killWorker,
  logLines,
  slotSender,
  sleep,
  startWorker,
  writeFaultConfig,
  type RunningWorker,
} from './fault-kit.js';

/**
 * Scenario 5: two instances of the built binary with the same config (so the same slot). One streams,
 * the other waits as a standby and is not ready; when the first is killed with SIGKILL, the standby
 * takes over within seconds and invalidates new changes; the first, restarted, waits in turn. Never
 * do both stream at once: Postgres allows one walsender per slot, and each worker's /status must agree.
 */
let pgServer: PostgresServer;
let redisServer: RedisServer;
beforeAll(async () => {
  if (servicesMissing('postgres', 'redis')) return;
  pgServer = await PostgresServer.start();
  redisServer = await RedisServer.start();
});
afterAll(async () => {
  await redisServer?.destroy();
  await pgServer?.destroy();
});

const workers: RunningWorker[] = [];
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  if (process.env['FAULT_LOGS']) workers.forEach((w, i) => writeFileSync(join(process.env['FAULT_LOGS']!, `standby-${i}.log`), w.output()));
  for (const w of workers.splice(0)) await killWorker(w);
  for (const close of closers.splice(0)) await close().catch(() => undefined);
});

const WAITING = 'replication slot in use by another worker; waiting';
const ROUNDS = 3;

describe.skipIf(servicesMissing('postgres', 'redis'))('two workers on one slot', () => {
  it('one streams, the other stands by and takes over within seconds of a kill -9, never both at once', { timeout: 300_000 }, async () => {
    const db = uniqueName('db');
    const url = await pgServer.createDatabase(db);
    await pgServer.query(`CREATE TABLE items (id int PRIMARY KEY)`, [], db);
    const slot = uniqueName('slot');
    const prefix = `${uniqueName('k')}:`;
    const channel = uniqueName('inv');
    const configPath = writeFaultConfig({
      url,
      slot,
      publication: uniqueName('pub'),
      redisUrl: redisServer.url(),
      prefix,
      notifyChannel: channel,
      rules: `  - table: items\n    invalidate: ["item:{id}"]\n`,
    });
    const redis = new Redis(redisServer.url());
    closers.push(async () => redis.disconnect());
    const subscriber = new Redis(redisServer.url());
    const counter = await ApplyCounter.subscribe(subscriber, channel);
    closers.push(() => counter.close());

    const a = await startWorker(configPath);
    workers.push(a);
    await waitFor(() => logLines(a, 'replication started').length > 0, { timeoutMs: 30_000, message: 'A to stream' });
    const b = await startWorker(configPath);
    workers.push(b);
    await waitFor(() => logLines(b, WAITING).length > 0, { timeoutMs: 30_000, message: 'B to wait for the slot' });

    // Both workers' view of who streams, and Postgres's, every 100 ms until the end.
    const instances: Array<{ name: string; w: RunningWorker }> = [
      { name: 'A', w: a },
      { name: 'B', w: b },
    ];
    let sampling = true;
    let samples = 0;
    const bothConnected: string[] = [];
    const tooManySenders: number[] = [];
    const sampler = (async () => {
      while (sampling) {
        const views = await Promise.all(
          instances.map(async ({ name, w }) => {
            if (!alive(w)) return null;
            const r = await httpGet(w.port, '/status').catch(() => null);
            return r?.body?.source?.connected === true ? name : null;
          }),
        );
        const streaming = views.filter((v) => v !== null);
        if (streaming.length > 1) bothConnected.push(`${new Date().toISOString()} ${streaming.join('+')}`);
        const sender = await slotSender(pgServer, slot);
        if (sender.senders > 1) tooManySenders.push(sender.senders);
        samples++;
        await sleep(100);
      }
    })();

    // One change every 200 ms, its key cached beforehand, for the whole test.
    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    closers.push(() => writer.end());
    const seededAt = new Map<number, number>();
    const committed = new Set<number>();
    let writing = true;
    let lastId = 0;
    const writes = (async () => {
      for (let id = 1; writing; id++) {
        seededAt.set(id, Date.now());
        await redis.set(`${prefix}item:${id}`, 'cached');
        await writer.query('INSERT INTO items (id) VALUES ($1)', [id]);
        committed.add(id);
        lastId = id;
        await sleep(200);
      }
    })();
    const invalidated = async (id: number) => committed.has(id) && (await redis.exists(`${prefix}item:${id}`)) === 0;

    await waitFor(() => invalidated(1), { timeoutMs: 10_000, message: 'A to invalidate' });
    const aReady = await httpGet(a.port, '/readyz');
    expect(aReady.status).toBe(200);
    expect(aReady.body).toMatchObject({ ready: true, role: 'active' });
    const bReady = await httpGet(b.port, '/readyz');
    expect(bReady.status).toBe(503);
    expect(bReady.body).toMatchObject({ ready: false, role: 'standby', reasons: ['standby: another worker streams the slot'] });
    expect(Date.parse(bReady.body.roleSince)).toBeLessThanOrEqual(Date.now());
    expect((await httpGet(b.port, '/status')).body).toMatchObject({ role: 'standby' });
    expect(metricValue((await httpGet(a.port, '/metrics')).body, 'cdc_invalidator_active')).toBe(1);
    expect(metricValue((await httpGet(b.port, '/metrics')).body, 'cdc_invalidator_active')).toBe(0);

    // Each round: the standby has waited long enough for its retry delay to reach the cap (10 s,
    // jittered to 5-10 s), the streaming worker is killed, the standby takes over, and the killed
    // one is started again and stands by.
    let streamer = a;
    let standby = b;
    const rounds: Array<{ streamSeconds: number; takeoverSeconds: number; standbyWaits: number }> = [];
    for (let round = 1; round <= ROUNDS; round++) {
      await sleep(25_000);
      expect(logLines(standby, 'replication started')).toEqual([]);
      expect((await httpGet(standby.port, '/readyz')).status).toBe(503);
      const standbyWaits = logLines(standby, WAITING).length;
      const before = (await slotSender(pgServer, slot)).activePid;
      expect(before).not.toBeNull();

      streamer.child.kill('SIGKILL');
      const killedAt = Date.now();
      expect(await streamer.exited).toBe('SIGKILL');
      const took = standby;
      const streams = waitFor((): number | false => logLines(took, 'replication started').length > 0 && Date.now(), {
        timeoutMs: 60_000,
        intervalMs: 20,
        message: 'the standby to stream',
      });
      // The first change whose key was cached after the kill: only the standby can invalidate it.
      const invalidates = waitFor(
        async (): Promise<number | false> => {
          const id = [...seededAt].find(([, t]) => t > killedAt)?.[0];
          return id !== undefined && (await invalidated(id)) && Date.now();
        },
        { timeoutMs: 60_000, intervalMs: 20, message: 'the standby to invalidate a change made after the kill' },
      );
      const streamSeconds = (((await streams) as number) - killedAt) / 1000;
      const takeoverSeconds = (((await invalidates) as number) - killedAt) / 1000;
      rounds.push({ streamSeconds, takeoverSeconds, standbyWaits });
      const after = (await slotSender(pgServer, slot)).activePid;
      expect(after).not.toBeNull();
      expect(after).not.toBe(before);
      await waitFor(async () => (await httpGet(took.port, '/readyz')).status === 200, { timeoutMs: 10_000, message: 'the new streamer ready' });
      const tookStatus = (await httpGet(took.port, '/status')).body;
      expect(tookStatus.role).toBe('active');
      expect(Date.parse(tookStatus.roleSince)).toBeGreaterThanOrEqual(killedAt);

      const restarted = await startWorker(configPath);
      workers.push(restarted);
      instances.push({ name: `restart${round}`, w: restarted });
      await waitFor(() => logLines(restarted, WAITING).length > 0, { timeoutMs: 30_000, message: 'the restarted worker to wait for the slot' });
      expect((await httpGet(restarted.port, '/readyz')).status).toBe(503);
      streamer = took;
      standby = restarted;
    }
    await sleep(3_000);
    expect(logLines(standby, 'replication started')).toEqual([]);
    const probe = lastId + 1;
    await waitFor(() => invalidated(probe), { timeoutMs: 10_000, message: 'the streamer to go on invalidating' });

    writing = false;
    await writes;
    sampling = false;
    await sampler;
    const last = lastId;
    await waitFor(() => invalidated(last), { timeoutMs: 15_000, message: 'the last change to be invalidated' });
    let lost = 0;
    for (let id = 1; id <= last; id++) if (!(await invalidated(id))) lost++;
    for (const w of [streamer, standby]) {
      w.child.kill('SIGTERM');
      expect(await w.exited).toBe(0);
    }
    const takeovers = rounds.map((r) => r.takeoverSeconds);
    const maxTakeover = Math.max(...takeovers);

    recordResult({
      id: '5',
      title: 'Two workers on one slot: standby takes over',
      runs: ROUNDS,
      changes: last,
      lost,
      duplicated: counter.duplicated(),
      recoverySeconds: maxTakeover,
      notes:
        `${ROUNDS} rounds of kill -9 of the streaming worker after the standby had waited 25 s (retry delay at its 10 s cap); ` +
        `standby streaming after ${rounds.map((r) => r.streamSeconds.toFixed(1)).join(', ')} s and invalidating a new change after ` +
        `${takeovers.map((t) => t.toFixed(1)).join(', ')} s (recovery = the slowest); each killed worker restarted and waited; ` +
        `${samples} samples of every worker's /status and of pg_stat_replication: ${bothConnected.length} with two streaming, ` +
        `${tooManySenders.length} with two walsenders`,
    });

    expect(lost).toBe(0);
    expect(bothConnected).toEqual([]);
    expect(tooManySenders).toEqual([]);
    expect(samples).toBeGreaterThan(300);
    // The standby retries every 5-10 s once its delay is capped; the takeover also needs Postgres
    // to notice the killed walsender's socket closed (immediate on loopback).
    expect(maxTakeover).toBeLessThan(15);
  });
});
