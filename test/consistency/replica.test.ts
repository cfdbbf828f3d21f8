// Reads from a streaming replica that replays with recovery_min_apply_delay = 500ms (any replica lags; the
// delay makes the lag certain). The worker deletes a key milliseconds after the primary's commit, a
// reader that misses reads the old row from the replica and fills the cache with it, and nothing deletes
// it again: stale until the TTL. With `consistency.replicas` (SPEC §8) the worker invalidates a commit's
// keys again once every listed replica has replayed it. The control run does not list the replica.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresStandby } from '../harness/postgres-standby.js';
import { PostgresServer } from '../harness/postgres.js';
import { RedisServer } from '../harness/redis.js';
import { servicesMissing } from '../harness/services.js';
import type { ConsistencyResult } from './results.js';
import { runConsistency } from './run.js';

const HOT_KEYS = 20;
const WRITERS = 6;
const WRITE_INTERVAL_MS = 20;
const READERS_PER_KIND = 4;
const READ_PAUSE_MS = 2;
const LOAD_MS = 4000;
const APPLY_DELAY_MS = 500;

let primary: PostgresServer;
let redis: RedisServer;
let replica: PostgresStandby;
beforeAll(async () => {
  if (servicesMissing('postgres-binaries', 'redis')) return;
  primary = await PostgresServer.start();
  redis = await RedisServer.start();
  replica = await PostgresStandby.start(primary, { applyDelay: APPLY_DELAY_MS });
});
afterAll(async () => {
  await replica?.destroy();
  await redis?.destroy();
  await primary?.destroy();
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function run(id: string, setting: string, withReplicas: boolean, expected: ConsistencyResult['expected']): Promise<ConsistencyResult> {
  return await runConsistency({
    id,
    scenario: `replica with a ${APPLY_DELAY_MS} ms apply delay`,
    readFrom: 'replica',
    setting,
    expected,
    rig: {
      primary,
      redis,
      hotKeys: HOT_KEYS,
      // The replica's connection string is only known per run (its database is the run's).
      ...(withReplicas ? { consistency: (database: string) => `consistency:\n  replicas:\n    - url: "${replica.url(database)}"\n` } : {}),
    },
    readUrl: (database) => replica.url(database),
    standbys: [replica],
    replicaPass: withReplicas,
    writers: WRITERS,
    writeIntervalMs: WRITE_INTERVAL_MS,
    readersPerKind: READERS_PER_KIND,
    readPauseMs: READ_PAUSE_MS,
    async drive({ writers }) {
      await sleep(LOAD_MS);
      writers.requestStop();
      return `writes for ${LOAD_MS} ms; replica recovery_min_apply_delay ${APPLY_DELAY_MS} ms`;
    },
  });
}

function staleOf(result: ConsistencyResult): Record<string, number> {
  return Object.fromEntries(result.clients.map((c) => [c.client, c.staleKeys]));
}

describe.skipIf(servicesMissing('postgres-binaries', 'redis'))(`reads from a replica with a ${APPLY_DELAY_MS} ms apply delay`, () => {
  it('control, no replicas setting: keys refilled from the lagging replica stay stale', { timeout: 90_000 }, async () => {
    const result = await run('R1', 'none (no replicas listed)', false, 'stale keys');
    expect(staleOf(result)['cache-aside']).toBeGreaterThan(0);
    expect(staleOf(result)['lease client']).toBeGreaterThan(0);
  });

  it('consistency.replicas lists the replica: no stale key after quiescence', { timeout: 90_000 }, async () => {
    const result = await run('R2', 'consistency.replicas: [the replica]', true, 'no stale keys');
    expect(staleOf(result)).toEqual({ 'cache-aside': 0, 'lease client': 0 });
  });
});
