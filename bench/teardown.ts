// What every bench that starts its own servers does at the end, also after a failure.
import { rmSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { OrphanGuard } from '../test/harness/orphan-guard.js';

export interface BenchServers {
  db: pg.Client | undefined;
  /** Slots whose names match this LIKE pattern are dropped (those still in use cannot be). */
  slotPattern: string;
  redis: Redis | undefined;
  servers: ReadonlyArray<{ destroy(): Promise<unknown> } | undefined>;
  guard: OrphanGuard;
  dir: string;
  say: (text: string) => void;
}

/** Drops the bench's slots, closes its clients, removes its servers, its watcher and its temp dir. */
export async function tearDown(o: BenchServers): Promise<void> {
  if (o.db !== undefined) {
    await o.db
      .query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE $1 AND NOT active', [o.slotPattern])
      .catch((err: Error) => o.say(`dropping slots failed: ${err.message}`));
    await o.db.end().catch(() => undefined);
  }
  o.redis?.disconnect();
  await Promise.allSettled(o.servers.map((s) => s?.destroy()));
  o.guard.release();
  rmSync(o.dir, { recursive: true, force: true });
}
