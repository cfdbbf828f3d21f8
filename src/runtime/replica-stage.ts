import type { KeyOperation } from '../core/change.js';
import type { SinkBatch } from '../ports/sink.js';
import type { SourceBatch } from '../ports/source.js';

/** Where the application's read replicas stand: waits until each has replayed a position. */
export interface ReplayWatch {
  start(): Promise<void>;
  /** True once every replica has replayed past `lsn`; false when stopping first. */
  waitReplayed(lsn: bigint): Promise<boolean>;
  close(): Promise<void>;
}

interface Entry<P> {
  batch: SourceBatch<P>;
  /** What to apply again once the replicas replayed the batch. */
  operations: KeyOperation[];
  /** The latest commit position in the batch; null when it has no change. */
  lsn: bigint | null;
}

/** Operations waiting for replicas before the worker stops taking batches: bounds memory. */
const MAX_PENDING_OPERATIONS = 200_000;

/**
 * The second pass for read replicas. A batch applied on the primary's terms is invalidated again
 * once every replica has replayed its commits, because a reader that missed in between may have
 * refilled the cache from a replica still showing the old row. Only then is the batch
 * acknowledged to the source, so a crash in between replays it: the second pass is never lost.
 *
 * Batches pass through in order, while the worker goes on applying later batches' first pass:
 * the primary's readers do not wait for a slow replica, and nothing is acknowledged out of order.
 * Version bumps are not repeated: a refill cannot move a version key back.
 */
export class ReplicaStage<P = unknown> {
  private readonly entries: Entry<P>[] = [];
  private pendingOperations = 0;
  private wakeRunner: (() => void) | null = null;
  private wakePusher: (() => void) | null = null;
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly options: {
      watch: ReplayWatch;
      /** Applies with retries; false when the worker stops first. */
      apply: (batch: SinkBatch) => Promise<boolean>;
      acknowledge: (batch: SourceBatch<P>) => Promise<void>;
      onError: (err: unknown) => void;
      maxPendingOperations?: number;
    },
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Hands over a batch whose first pass is applied; waits while too much is pending. */
  async push(batch: SourceBatch<P>, operations: readonly KeyOperation[]): Promise<void> {
    let lsn: bigint | null = null;
    for (const change of batch.changes) if (change.version !== null && (lsn === null || change.version > lsn)) lsn = change.version;
    const again = operations.filter((op) => op.action !== 'bump');
    const max = this.options.maxPendingOperations ?? MAX_PENDING_OPERATIONS;
    while (!this.stopped && this.pendingOperations > 0 && this.pendingOperations + again.length > max) {
      await new Promise<void>((resolve) => (this.wakePusher = resolve));
    }
    this.entries.push({ batch, operations: again, lsn });
    this.pendingOperations += again.length;
    this.wake();
  }

  get pending(): number {
    return this.entries.length;
  }

  private async run(): Promise<void> {
    try {
      while (!this.stopped) {
        const entry = this.entries[0];
        if (entry === undefined) {
          await new Promise<void>((resolve) => (this.wakeRunner = resolve));
          continue;
        }
        if (entry.lsn !== null && entry.operations.length > 0) {
          if (!(await this.options.watch.waitReplayed(entry.lsn))) return;
        }
        const appliedPosition = entry.batch.appliedPosition ?? null;
        if (entry.operations.length > 0 || appliedPosition !== null) {
          if (!(await this.options.apply({ operations: entry.operations, deadLetters: [], appliedPosition }))) return;
        }
        await this.options.acknowledge(entry.batch);
        this.entries.shift();
        this.pendingOperations -= entry.operations.length;
        const pusher = this.wakePusher;
        this.wakePusher = null;
        pusher?.();
      }
    } catch (err) {
      this.options.onError(err);
    }
  }

  private wake(): void {
    const runner = this.wakeRunner;
    this.wakeRunner = null;
    runner?.();
  }

  /**
   * Stops: batches still waiting are not acknowledged, so the source sends them again at the next
   * start. With `drainMs`, first waits that long for the pending batches to pass.
   */
  async stop(drainMs = 0): Promise<void> {
    if (drainMs > 0 && this.entries.length > 0) {
      const until = Date.now() + drainMs;
      while (this.entries.length > 0 && Date.now() < until && this.loop !== null) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
    this.stopped = true;
    this.wake();
    const pusher = this.wakePusher;
    this.wakePusher = null;
    pusher?.();
    await this.options.watch.close();
    await this.loop;
  }
}
