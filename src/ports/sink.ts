import type { DeadLetter, KeyOperation } from '../core/change.js';

/**
 * The port between the worker loop and a cache. `apply` is all-or-throw: when it resolves, every
 * operation and dead letter of the batch is applied; when it throws, the worker retries the whole
 * batch, so every operation must be safe to apply twice.
 */
export interface SinkBatch {
  operations: readonly KeyOperation[];
  deadLetters: readonly DeadLetter[];
  /**
   * The source position this batch completes, stored once everything else of the batch is applied,
   * for applications that wait for their own write (read-your-writes). Absent: nothing is stored.
   */
  appliedPosition?: string | null | undefined;
}

export interface Sink {
  /** What it writes to, for logs and /readyz: `redis` (the default) or `memcached`. */
  readonly kind?: 'redis' | 'memcached';
  /** Where it writes, for logs: `host:port`, a cluster's seeds, a Sentinel set; never a password. */
  readonly target?: string;
  connect(): Promise<void>;
  apply(batch: SinkBatch): Promise<void>;
  isConnected(): boolean;
  close(): Promise<void>;
}
