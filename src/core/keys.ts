/**
 * Redis key names the worker and the application's cache client share (without `keyPrefix`).
 * One module, so that neither imports the other.
 */

/** The position the worker has applied (a PostgreSQL LSN as text): what waitForCommit reads. */
export const APPLIED_POSITION_KEY = 'cdc-invalidator:applied';
