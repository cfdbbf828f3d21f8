// Figures of the consistency scenarios, recorded by the tests themselves and turned into CONSISTENCY.md by
// `npm run consistency`. Each run writes one JSON file under test/consistency/results/ (committed, so the
// tables show the figures of the last full run), before its assertions, so that a run whose outcome is
// not the expected one still leaves its figures.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ClientKind } from './load.js';

export interface ClientFigures {
  client: ClientKind;
  /** Hot keys read through this client. */
  keys: number;
  /**
   * Keys whose cached value differed from the primary's row after quiescence, but for those of
   * `raceKeys`.
   */
  staleKeys: number;
  /** The first few of them: key, cached value, the primary's value. */
  staleSample: string[];
  /**
   * Textbook cache-aside only: stale keys its own race left, which no worker setting closes (the lease
   * client does): the fill that wrote the stale value read the row before the worker's last
   * invalidation of the key reached the test and wrote it after. An invalidation applied before the
   * commit was visible, or never applied, leaves a fill that read after it: counted in staleKeys.
   */
  raceKeys?: number;
  raceSample?: string[];
  reads: number;
  /** Misses that read the row and stored it. */
  fills: number;
  /** Committed updates of this client's rows. */
  writes: number;
  /**
   * Staleness window, from a write's commit returning to a reader first getting that version (or a later
   * one), in ms: 'never' when some writes were never seen before the run ended (stale until the TTL).
   */
  windowP50Ms: number | 'never';
  windowP99Ms: number | 'never';
  windowMaxMs: number | 'never';
  /** Writes no reader was ever given (nor a later version of the row). */
  writesNeverSeen: number;
}

export interface ConsistencyResult {
  /** Order in CONSISTENCY.md ("P1", "R2"...). */
  id: string;
  scenario: string;
  /** Where the readers' misses read the row. */
  readFrom: 'primary' | 'replica';
  /** The worker's consistency setting for the run, as a user would write it. */
  setting: string;
  /** What the run is meant to show: stale keys left behind (a control run), or none. */
  expected: 'stale keys' | 'no stale keys';
  clients: ClientFigures[];
  /** Seconds of load (writers and readers running). */
  loadSeconds: number;
  /** Seconds from the end of the writes to quiescence (worker applied and confirmed, standbys replayed). */
  quiesceSeconds: number;
  notes: string;
  /** Set when the run could not be measured (the worker refused its config, say). */
  error?: string;
}

export const RESULTS_DIR = fileURLToPath(new URL('./results/', import.meta.url));

/** Writes a run's figures when the run is meant to record them (`npm run test:consistency` sets CDC_RECORD_RESULTS=1). */
export function recordConsistency(result: ConsistencyResult): void {
  if (process.env['CDC_RECORD_RESULTS'] !== '1') return;
  mkdirSync(RESULTS_DIR, { recursive: true });
  // Named by id only, so that renaming a scenario or a setting leaves no file of the old name behind.
  const recorded = { ...result, worker: workerVersion(), recordedAt: new Date().toISOString() };
  writeFileSync(`${RESULTS_DIR}${result.id.toLowerCase()}.json`, `${JSON.stringify(recorded, null, 2)}\n`);
}

/**
 * The commit the measured worker was built from, marked "-dirty" when its sources had changes (the results
 * this run has already written do not count).
 */
function workerVersion(): string {
  const cwd = fileURLToPath(new URL('../../', import.meta.url));
  const git = (...args: string[]) => execFileSync('git', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    const dirty = git('status', '--porcelain', '--', 'src', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json') !== '';
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? '-dirty' : ''}`;
  } catch {
    return 'unknown';
  }
}
