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
