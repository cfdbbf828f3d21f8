/**
 * One small error hierarchy: every error the worker raises has a stable `code` (for logs, metrics
 * and exit codes) and says whether retrying can help. Driver errors are wrapped at the adapter that
 * met them, with the original kept as `cause`.
 */
export class InvalidatorError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** A problem found in a config or mapping file, with where it is. */
export interface FileProblem {
  file: string;
  line?: number;
  column?: number;
  /** Path inside the document, e.g. `rules[2].invalidate[0]`. */
  path: string;
  message: string;
  severity: 'error' | 'warning';
}

export function formatProblem(p: FileProblem): string {
  const where = p.line === undefined ? p.file : `${p.file}:${p.line}:${p.column ?? 1}`;
  const at = p.path === '' ? '' : ` ${p.path}:`;
  return `${where}:${at} ${p.severity === 'warning' ? 'warning: ' : ''}${p.message}`;
}

/** Invalid config or mapping files: the worker refuses to start (exit 2). */
export class ConfigError extends InvalidatorError {
  readonly problems: FileProblem[];

  constructor(problems: FileProblem[]) {
    super('CONFIG_INVALID', problems.map(formatProblem).join('\n'));
    this.problems = problems;
  }
}

/** The source (database, broker) cannot be reached right now. */
export class SourceUnavailableError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('SOURCE_UNAVAILABLE', message, { retryable: true, cause });
  }
}

/** Another worker streams from the replication slot; wait for it to go away. */
export class SlotInUseError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('SLOT_IN_USE', message, { retryable: true, cause });
  }
}

/** The source is set up in a way the worker cannot work with (wrong plugin, wal_level, lost slot). */
export class SourceSetupError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('SOURCE_SETUP', message, { retryable: false, cause });
  }
}

/**
 * The replication slot can no longer supply changes (its WAL was removed): changes were skipped,
 * and streaming on would hide that. Fatal unless recovery is configured.
 */
export class SlotLostError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('SLOT_LOST', message, { retryable: false, cause });
  }
}

/**
 * The rules do not fit the database: a column they name does not exist, or a table cannot send
 * what they render from old rows. Found at start; the worker refuses to run (exit 2) with the fix.
 */
export class RulesMismatchError extends InvalidatorError {
  /** Problems placed in the mapping files (the composition root adds line and column). */
  readonly problems: ReadonlyArray<{ file: string; path: (string | number)[]; message: string }>;
  /** Problems of the database, each with the statement or setting that fixes it. */
  readonly refusals: readonly string[];

  constructor(problems: RulesMismatchError['problems'], refusals: readonly string[]) {
    super('RULES_MISMATCH', [...problems.map((p) => `${p.file}#${p.path.join('.')}: ${p.message}`), ...refusals].join('\n'));
    this.problems = problems;
    this.refusals = refusals;
  }
}

/** The stream carried something the decoder cannot understand. */
export class DecodeError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('DECODE', message, { retryable: false, cause });
  }
}

/** Redis (or another sink) did not apply a batch; the batch is retried whole. */
export class SinkUnavailableError extends InvalidatorError {
  constructor(message: string, cause?: unknown) {
    super('SINK_UNAVAILABLE', message, { retryable: true, cause });
  }
}

/** Normalise anything thrown into an Error, once, at the catch site. */
export function toError(value: unknown): Error {
  if (value instanceof Error) return value;
  if (typeof value === 'string') return new Error(value);
  try {
    return new Error(JSON.stringify(value));
  } catch {
    return new Error(String(value));
  }
}

export function isRetryable(err: unknown): boolean {
  return err instanceof InvalidatorError ? err.retryable : false;
}
