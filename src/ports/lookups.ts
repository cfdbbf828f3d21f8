import type { LookupRequest, LookupResults } from '../core/lookup.js';

/**
 * The port between the worker loop and whatever answers a rule's lookups (the source database
 * today). Runs a batch's lookups; every request gets a result, a failure included.
 */
export interface LookupRunner {
  run(requests: readonly LookupRequest[]): Promise<LookupResults>;
  close(): Promise<void>;
}
