// Reads from the primary while it has a synchronous standby. A commit is flushed to the primary's WAL,
// then waits for the standby's acknowledgement, and only then becomes visible to other sessions; the
// logical walsender ships it as soon as it is flushed. With the standby paused (SIGSTOP) mid-commit, the
// worker deletes the key while the new row is still invisible, a reader that misses reads the old row
// and fills the cache with it, and nothing deletes it again: stale until the TTL. The worker's
// `consistency.visibility` (SPEC §8) applies a commit's invalidations only once it is visible: `always`,
// and `auto` (the default) whenever synchronous_standby_names is set. The control run turns it off.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStandby } from '../harness/postgres-standby.js';
import { PostgresServer } from '../harness/postgres.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { WRITER_APPLICATION_NAME } from './load.js';
import type { ConsistencyResult } from './results.js';
import { runConsistency } from './run.js';

const HOT_KEYS = 20;
const WRITERS = 6;
const WRITE_INTERVAL_MS = 20;
const READERS_PER_KIND = 4;
const READ_PAUSE_MS = 2;
const PAUSES = 3;
/** Load between two pauses of the standby. */
const BETWEEN_PAUSES_MS = 1200;
/** How long the standby stays paused once every writer's commit is held. */
const PAUSE_MS = 400;

let primary: PostgresServer;
let redis: RedisServer;
let standby: PostgresStandby;
beforeAll(async () => {
  if (servicesMissing('postgres-binaries', 'redis')) return;
  primary = await PostgresServer.start();
  redis = await RedisServer.start();
  standby = await PostgresStandby.start(primary, { synchronous: true });
});
afterAll(async () => {
  await standby?.destroy();
  await redis?.destroy();
  await primary?.destroy();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function run(id: string, setting: string, consistency: string | undefined, expected: ConsistencyResult['expected']): Promise<ConsistencyResult> {
  return await runConsistency({
    id,
    scenario: 'synchronous standby paused mid-commit',
    readFrom: 'primary',
    setting,
    expected,
    rig: { primary, redis, hotKeys: HOT_KEYS, ...(consistency === undefined ? {} : { consistency }) },
    readUrl: (database) => primary.url(database),
    standbys: [standby],
    replicaPass: false,
    writers: WRITERS,
    writeIntervalMs: WRITE_INTERVAL_MS,
    readersPerKind: READERS_PER_KIND,
    readPauseMs: READ_PAUSE_MS,
    async drive({ rig, writers }) {
      const held: number[] = [];
      for (let pause = 1; pause <= PAUSES; pause++) {
        await sleep(BETWEEN_PAUSES_MS);
        standby.pause();
        try {
          // Every writer's next commit is flushed and shipped to the worker, then waits for the standby.
          const waiting = await waitFor(
            async () => {
              const [row] = await rig.sql<{ n: number }>(
                `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1 AND wait_event = 'SyncRep'`,
                [WRITER_APPLICATION_NAME],
              );
              const n = row?.n ?? 0;
              return n >= writers.count ? n : undefined;
            },
            { timeoutMs: 10_000, intervalMs: 5, message: 'every writer to wait for the synchronous standby' },
          );
          held.push(waiting);
          await sleep(PAUSE_MS);
          // The held commits are the last writes: nothing after them invalidates their keys.
          if (pause === PAUSES) writers.requestStop();
        } finally {
          standby.resume();
        }
      }
      return `standby paused ${PAUSES} times (SIGSTOP, every ${BETWEEN_PAUSES_MS} ms) for ${PAUSE_MS} ms after ${held.join(', ')} commits were waiting for it; the last pause held the last write of ${WRITERS} rows`;
    },
  });
}

function staleOf(result: ConsistencyResult): Record<string, number> {
  return Object.fromEntries(result.clients.map((c) => [c.client, c.staleKeys]));
}

describe.skipIf(servicesMissing('postgres-binaries', 'redis'))('reads from the primary, synchronous standby paused mid-commit', () => {
  it('control, visibility off: keys invalidated before their commit was visible stay stale', { timeout: 90_000 }, async () => {
    const result = await run('P1', 'consistency.visibility: off', 'consistency:\n  visibility: off\n', 'stale keys');
    // Through either client: a lease taken after the invalidation does not help.
    expect(staleOf(result)['cache-aside']).toBeGreaterThan(0);
    expect(staleOf(result)['lease client']).toBeGreaterThan(0);
  });

  it('visibility always: no stale key after quiescence', { timeout: 90_000 }, async () => {
    const result = await run('P2', 'consistency.visibility: always', 'consistency:\n  visibility: always\n', 'no stale keys');
    expect(staleOf(result)).toEqual({ 'cache-aside': 0, 'lease client': 0 });
  });

  it('default settings (visibility auto) with synchronous_standby_names set: no stale key after quiescence', { timeout: 90_000 }, async () => {
    const result = await run('P3', 'none (visibility: auto, the default)', undefined, 'no stale keys');
    expect(staleOf(result)).toEqual({ 'cache-aside': 0, 'lease client': 0 });
  });
});
