/**
 * The name of the key where the worker records the position it has applied, shared by the worker
 * (which writes it once everything else of a batch is applied) and the client (`waitForCommit` reads it). A pure
 * module with no dependencies, like `leases.ts`, so either side imports it without loading the other.
 *
 * For the Postgres source the value is an LSN in PostgreSQL's text form (`0/16B3748`, as
 * `pg_current_wal_lsn()::text` prints it); `src/core/lsn.ts` parses and compares it.
 */

/** The key's name after the worker's `redis.keyPrefix`. */
export const APPLIED_KEY_NAME = 'cdc-invalidator:applied';

/** The Redis key holding the applied position: `<keyPrefix>cdc-invalidator:applied`. */
export function appliedKey(keyPrefix = ''): string {
  return keyPrefix + APPLIED_KEY_NAME;
}
