/**
 * The normalised change every source produces and the rules engine consumes. Values are in their
 * PostgreSQL text form; `null` is SQL NULL; a column that is absent (or `undefined`) is unknown:
 * Postgres did not send it (key-only old row, unchanged TOAST value), and nothing may guess it.
 */
export type Value = string | null;
export type Row = Readonly<Record<string, Value | undefined>>;

export const OPERATIONS = ['insert', 'update', 'delete', 'truncate'] as const;
export type Operation = (typeof OPERATIONS)[number];

export interface Change {
  /** Schema name, e.g. `public`. */
  schema: string;
  /** Table name without schema. */
  table: string;
  op: Operation;
  /** Old row for update and delete (possibly partial), null for insert and truncate. */
  before: Row | null;
  /** New row for insert and update, null for delete and truncate. */
  after: Row | null;
  /** Replica identity columns, named in dead letters so an operator can find the row. */
  keyColumns: readonly string[];
  /**
   * Value a `bump` writes: a number that grows with commit order (the commit LSN for Postgres),
   * or null where the source has no such position (the version key is then incremented).
   */
  version: bigint | null;
  /** Source position in its own notation (an LSN, topic/partition/offset), for dead letters and logs. */
  position: string;
}

/**
 * What the sink is asked to do. Keys, tags and patterns here are without the configured prefix.
 * - delete: DEL (or UNLINK) the key.
 * - bump: set the version key to `version` if greater (INCR when null).
 * - tag: delete every key that is a member of the set `tag:<tag>`, then the set.
 * - pattern: delete every key matching the glob pattern (SCAN + UNLINK). Values rendered into it
 *   have their glob characters escaped; only the template's own `*`, `?` and `[...]` match.
 */
export type KeyOperation =
  | { action: 'delete'; key: string }
  | { action: 'bump'; key: string; version: bigint | null }
  | { action: 'tag'; tag: string }
  | { action: 'pattern'; pattern: string };

/** Low-cardinality reasons, used as metric labels. */
export type SkipReason = 'unknown_value' | 'truncate' | 'lookup_failed' | 'malformed_event';

/** A change (or part of one) that could not be turned into keys and has no fallback. */
export interface DeadLetter {
  schema: string;
  table: string;
  op: Operation;
  position: string;
  reason: SkipReason;
  /** Human-readable detail: which rule, which template, which column. Never a row value. */
  detail: string;
  /** Replica identity column values, when known: enough to find the row, nothing more. */
  key: Record<string, Value> | null;
}

/** A rule whose keys could not be computed, so its fallback actions ran instead. */
export interface FallbackUse {
  schema: string;
  table: string;
  op: Operation;
  reason: SkipReason;
  rule: string;
  detail: string;
}

export interface Evaluation {
  operations: KeyOperation[];
  fallbacks: FallbackUse[];
  deadLetters: DeadLetter[];
}
