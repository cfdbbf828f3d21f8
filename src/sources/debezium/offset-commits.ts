import { sleep } from '../../lib/backoff.js';

/** Where a partition's consumption may resume: every message before `next` has been applied. */
export interface PartitionPosition {
  topic: string;
  partition: number;
  next: string;
}

/**
 * Offset commits of what the worker acknowledged: the latest position of each partition, one
 * commit request at a time. A commit never holds up the next batch, and acknowledgements that come
 * while one is on its way go together in the next. A position is only ever added once applied, so
 * whatever is sent, whenever, is true (a late one at worst makes a new owner replay more).
 */
export class OffsetCommits<P extends PartitionPosition> {
  private pending = new Map<string, P>();
  private inFlight: Promise<void> | null = null;

  /** `send` commits the positions, or rejects (having said why) when it could not. */
  constructor(private readonly send: (positions: P[]) => Promise<void>) {}

  /** Positions waiting to be sent. */
  get size(): number {
    return this.pending.size;
  }

  add(position: P): void {
    this.pending.set(`${position.topic}/${position.partition}`, position);
    this.start();
  }

  /**
   * Waits until nothing added is left uncommitted: for the requests on their way, and for one more
   * attempt at what failed. False when something is still uncommitted then, or after `timeoutMs`.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    const gaveUp = new AbortController();
    const timeout = sleep(timeoutMs, gaveUp.signal).then(() => false);
    let retried = false;
    try {
      while (this.inFlight !== null || this.pending.size > 0) {
        if (this.inFlight === null) {
          if (retried) return false;
          retried = true;
          this.start();
        }
        if (!(await Promise.race([this.inFlight!.then(() => true), timeout]))) return false;
      }
      return true;
    } finally {
      gaveUp.abort();
    }
  }

  private start(): void {
    if (this.inFlight !== null || this.pending.size === 0) return;
    const positions = [...this.pending.values()];
    this.pending = new Map();
    this.inFlight = this.send(positions).then(
      () => {
        this.inFlight = null;
        this.start();
      },
      () => {
        // Kept for the next acknowledgement (or the final flush), unless a later position came.
        for (const p of positions) {
          const key = `${p.topic}/${p.partition}`;
          if (!this.pending.has(key)) this.pending.set(key, p);
        }
        this.inFlight = null;
      },
    );
  }
}
