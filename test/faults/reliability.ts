// Figures of the fault scenarios, recorded by the tests themselves and turned into RELIABILITY.md by
// `npm run reliability`. Each scenario writes one JSON file under test/faults/results/ (committed,
// so the table shows the figures of the last full run).
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Redis } from 'ioredis';

export interface ScenarioResult {
  /** Number in issue order ("1", "2a"...) and a short title. */
  id: string;
  title: string;
  /** Times the fault was injected (kills, outages, restarts). */
  runs: number;
  /** Changes committed during the scenario that had to be invalidated. */
  changes: number;
  /** Changes whose keys were never invalidated. Must be 0. */
  lost: number;
  /** Key operations applied more than once (replays after a fault); null when not measured. */
  duplicated: number | null;
  /** Seconds from the end of the fault to caught up; null when not applicable. */
  recoverySeconds: number | null;
  /** Anything else worth a column: peak RSS, what was checked. */
  notes: string;
}

export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

/**
 * Writes a scenario's figures when the run is meant to record them (`npm run test:faults` sets
 * CDC_RECORD_RESULTS=1); an ordinary `npm test` leaves the committed figures alone.
 */
export function recordResult(result: ScenarioResult): void {
  if (process.env['CDC_RECORD_RESULTS'] !== '1') return;
  mkdirSync(RESULTS_DIR, { recursive: true });
  const slug = `${result.id}-${result.title}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
  writeFileSync(`${RESULTS_DIR}${slug}.json`, `${JSON.stringify({ ...result, recordedAt: new Date().toISOString() }, null, 2)}\n`);
}

/**
 * Counts how often each key was applied, from the worker's notifications (redis.notifyChannel):
 * every applied batch publishes its keys, so a key replayed after a fault shows up twice.
 * Subscribe before the worker starts; the subscriber's own Redis must stay up.
 */
export class ApplyCounter {
  readonly counts = new Map<string, number>();

  private constructor(private readonly subscriber: Redis) {}

  static async subscribe(subscriber: Redis, channel: string): Promise<ApplyCounter> {
    const counter = new ApplyCounter(subscriber);
    subscriber.on('message', (_channel: string, message: string) => {
      const payload = JSON.parse(message) as { keys: string[] };
      for (const key of payload.keys) counter.counts.set(key, (counter.counts.get(key) ?? 0) + 1);
    });
    await subscriber.subscribe(channel);
    return counter;
  }

  /** Applications beyond the first, over the keys matching `filter`. */
  duplicated(filter: (key: string) => boolean = () => true): number {
    let extra = 0;
    for (const [key, n] of this.counts) if (filter(key) && n > 1) extra += n - 1;
    return extra;
  }

  async close(): Promise<void> {
    await this.subscriber.quit().catch(() => undefined);
  }
}
