import { parseLsn, type Lsn } from '../core/lsn.js';
import { CacheTimeoutError } from './errors.js';
import type { CacheErrorPhase } from './options.js';
import { nextPollMs } from './waiters.js';
import { withTimeout } from './timeout.js';

export interface WaitForCommitOptions {
  /** How long to wait for the worker to reach the position. Default 1000; 0 checks once. */
  timeoutMs?: number;
}

export const DEFAULT_COMMIT_TIMEOUT_MS = 1000;

/** The worker applies a commit a few ms after it; the polls start at 1 ms and grow to this. */
const COMMIT_POLL_MAX_MS = 20;

/** The caller's LSN, or a TypeError that says what was expected. */
export function commitLsn(lsn: unknown): Lsn {
  const expected = 'a PostgreSQL LSN in text form like "0/16B3748", as pg_current_wal_lsn()::text prints it';
  if (typeof lsn !== 'string') throw new TypeError(`waitForCommit: lsn must be ${expected}, got ${typeof lsn}`);
  try {
    return parseLsn(lsn);
  } catch {
    throw new TypeError(`waitForCommit: lsn must be ${expected}, got ${JSON.stringify(lsn)}`);
  }
}

export function commitTimeoutMs(options: WaitForCommitOptions | undefined): number {
  const value: unknown = options?.timeoutMs;
  if (value === undefined) return DEFAULT_COMMIT_TIMEOUT_MS;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`waitForCommit: timeoutMs must be a finite number >= 0, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

export interface AppliedReader {
  /** Reads the stored position (`<keyPrefix>cdc-invalidator:applied`): its text, or null when absent. */
  read: () => Promise<string | null>;
  /** The key, for messages. */
  key: string;
  operationTimeoutMs: number;
  report: (err: unknown, during: CacheErrorPhase) => void;
}

/**
 * Polls the worker's applied position until it is at or past `target` (true) or `timeoutMs` has passed
 * (false). Redis failures and a stored value that is not an LSN are reported and count as "not yet":
 * the answer is only ever true when the worker's own record says so.
 */
export async function waitForApplied(reader: AppliedReader, target: Lsn, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  let pollMs = 1;
  let first = true;
  // One report per call and kind: a Redis that is down would otherwise be reported on every poll.
  const reported = new Set<string>();
  const reportOnce = (kind: string, err: unknown) => {
    if (reported.has(kind)) return;
    reported.add(kind);
    reader.report(err, 'commit');
  };
  for (;;) {
    // The first check has the whole operation timeout; later ones end with the caller's deadline.
    const limitMs = first ? reader.operationTimeoutMs : Math.max(1, Math.min(reader.operationTimeoutMs, deadline - Date.now()));
    first = false;
    try {
      const stored = await withTimeout(reader.read(), limitMs, 'GET');
      if (stored !== null) {
        let applied: Lsn | undefined;
        try {
          applied = parseLsn(stored);
        } catch {
          reportOnce('value', new TypeError(`${reader.key} holds ${JSON.stringify(stored.slice(0, 40))}, which is not an LSN`));
        }
        if (applied !== undefined && applied >= target) return true;
      }
    } catch (err) {
      // A check cut short by the caller's own deadline is not Redis's fault.
      if (!(err instanceof CacheTimeoutError && limitMs < reader.operationTimeoutMs)) reportOnce('redis', err);
    }
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise<void>((resolve) => setTimeout(resolve, Math.min(pollMs, left)));
    pollMs = nextPollMs(pollMs, 1, COMMIT_POLL_MAX_MS);
  }
}
