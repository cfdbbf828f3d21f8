// Rules as mapping files write them (after schema validation): what the rules compiler and the query
// rule derivation both take.
import type { Operation } from './change.js';

export interface ActionsSpec {
  invalidate?: string[] | undefined;
  bump?: string[] | undefined;
  tags?: string[] | undefined;
  patterns?: string[] | undefined;
}

export interface LookupSpec {
  sql: string;
  params: string[];
  timeoutMs: number;
  retries: number;
}

/** A rule as written in a mapping file, after schema validation. */
export interface RuleSpec extends ActionsSpec {
  table: string;
  on?: Operation[] | undefined;
  when?: { changed?: string[] | undefined } | undefined;
  lookup?: Record<string, LookupSpec> | undefined;
  fallback?: ActionsSpec | undefined;
}

/** A query rule as written in a mapping file, after schema validation. */
export interface QueryRuleSpec {
  /** The SELECT the application runs, with $1..$n for its parameters. */
  query: string;
  /** Names of $1..$n, in order: the key templates use them. */
  params?: string[] | undefined;
  invalidate?: string[] | undefined;
  bump?: string[] | undefined;
  tags?: string[] | undefined;
  patterns?: string[] | undefined;
  fallback?: ActionsSpec | undefined;
  lookupTimeoutMs?: number | undefined;
  lookupRetries?: number | undefined;
  /**
   * For a query whose shape is not supported: cover it coarsely instead of refusing it. Any change to a
   * table the query mentions then deletes every key of the rule: by pattern (a parameter matches
   * anything), or by a tag the application registers the keys under.
   */
  coarse?: 'pattern' | { tag: string } | undefined;
}
