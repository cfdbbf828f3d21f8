import type { Change, DeadLetter } from '../core/change.js';

/**
 * The buffer between a source and the worker loop: changes in commit order, with position markers
 * (a Postgres commit, a Kafka offset) between them. The worker takes what has piled up, at most
 * `maxChanges` at a time; the position it gets back is the last marker inside what it took, so
 * acknowledging it never covers a change it has not applied.
 *
 * Latency: a change that arrives while the worker waits is handed over at the end of the current
 * I/O turn (everything that arrived in the same socket read goes with it), or after `maxWaitMs`
 * counted from that first change's arrival, never from the latest one.
 */
export interface Taken<P> {
  changes: Change[];
  /** Last position marker among the taken entries, or null when they end inside a transaction. */
  position: P | null;
  /** Every position marker taken, in order (a source with several partitions needs them all). */
  positions: P[];
  /** Events the source could not turn into changes, to be recorded as dead letters. */
  deadLetters: DeadLetter[];
  /** Commit time of the oldest change taken, in ms since the epoch (NaN when unknown). */
  oldestCommitTimeMs: number;
  /** Commit time of each transaction completed within what was taken (one per position marker). */
  commitTimesMs: number[];
}

/**
 * Memory bounds in bytes as received, for wide rows: a decoded change holds its values as strings,
 * about the same size (twice for text outside Latin-1), plus a few hundred bytes of objects, which
 * a source's bound in changes covers. A source stops reading at HIGH_WATER_BYTES buffered and hands
 * the worker at most MAX_BATCH_BYTES at a time.
 */
export const HIGH_WATER_BYTES = 16 * 2 ** 20;
export const MAX_BATCH_BYTES = 8 * 2 ** 20;

type Entry<P> =
  | { change: Change; commitTimeMs: number; bytes: number }
  | { position: P; commitTimeMs: number }
  | { deadLetter: DeadLetter; commitTimeMs: number };

export class BatchQueue<P> {
  /** Entries before `head` were taken; they are cleared so the changes can be collected. */
  private entries: Array<Entry<P> | undefined> = [];
  private head = 0;
  private changeCount = 0;
  private byteCount = 0;
  private firstArrivalMs = 0;
  private waiter: (() => void) | null = null;
  private wakeScheduled = false;
  private closedReason: Error | null = null;
  private closed = false;

  constructor(
    private readonly options: { maxWaitMs: number; now?: () => number },
  ) {}

  /** Changes waiting to be taken. */
  get size(): number {
    return this.changeCount;
  }

  /** Bytes of the changes waiting to be taken, as the source measured them (its wire size). */
  get bytes(): number {
    return this.byteCount;
  }

  get isEmpty(): boolean {
    return this.head >= this.entries.length;
  }

  /** Commit time of the oldest entry still queued, or null when the queue is empty. */
  oldestCommitTimeMs(): number | null {
    const e = this.entries[this.head];
    return e === undefined ? null : e.commitTimeMs;
  }

  /** `bytes`: the change's size as received, which bounds what a batch and the buffer hold. */
  pushChange(change: Change, commitTimeMs: number, bytes = 0): void {
    this.push({ change, commitTimeMs, bytes });
    this.changeCount++;
    this.byteCount += bytes;
  }

  pushPosition(position: P, commitTimeMs: number): void {
    this.push({ position, commitTimeMs });
  }

  pushDeadLetter(deadLetter: DeadLetter, commitTimeMs: number): void {
    this.push({ deadLetter, commitTimeMs });
  }

  /** Drops everything queued: the source reconnected and will send it again. */
  clear(): void {
    this.entries = [];
    this.head = 0;
    this.changeCount = 0;
    this.byteCount = 0;
  }

  /** Wakes a waiting take() with null (stopping), or with the error (the source failed for good). */
  close(error?: Error): void {
    this.closed = true;
    this.closedReason = error ?? null;
    this.wake();
  }

  /**
   * Waits until something is queued, then takes at most `maxChanges` changes, and no more than
   * `maxBytes` of them (one change at least, however large). Null once closed.
   */
  async take(maxChanges: number, maxBytes = Number.POSITIVE_INFINITY): Promise<Taken<P> | null> {
    for (;;) {
      if (this.closed) {
        if (this.closedReason !== null) throw this.closedReason;
        return null;
      }
      if (!this.isEmpty) {
        const waitMs = this.firstArrivalMs + this.options.maxWaitMs - this.now();
        if (this.options.maxWaitMs <= 0 || this.changeCount >= maxChanges || this.byteCount >= maxBytes || waitMs <= 0) {
          return this.takeNow(maxChanges, maxBytes);
        }
        await this.waitForPush(waitMs);
        continue;
      }
      await this.waitForPush(null);
    }
  }

  private takeNow(maxChanges: number, maxBytes: number): Taken<P> {
    const changes: Change[] = [];
    const commitTimesMs: number[] = [];
    const positions: P[] = [];
    const deadLetters: DeadLetter[] = [];
    let oldest = Number.NaN;
    let bytes = 0;
    let i = this.head;
    for (; i < this.entries.length; i++) {
      const entry = this.entries[i]!;
      const isChange = 'change' in entry;
      if (isChange && (changes.length >= maxChanges || (changes.length > 0 && bytes + entry.bytes > maxBytes))) break;
      this.entries[i] = undefined;
      if (isChange) {
        changes.push(entry.change);
        bytes += entry.bytes;
      } else if ('position' in entry) {
        positions.push(entry.position);
        commitTimesMs.push(entry.commitTimeMs);
      } else {
        deadLetters.push(entry.deadLetter);
      }
      if (Number.isNaN(oldest)) oldest = entry.commitTimeMs;
    }
    this.head = i;
    this.changeCount -= changes.length;
    this.byteCount -= bytes;
    if (this.head >= this.entries.length) {
      this.entries = [];
      this.head = 0;
    } else if (this.head > 4_096 && this.head * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
    return { changes, position: positions.at(-1) ?? null, positions, deadLetters, oldestCommitTimeMs: oldest, commitTimesMs };
  }

  private push(entry: Entry<P>): void {
    if (this.isEmpty) this.firstArrivalMs = this.now();
    this.entries.push(entry);
    // Hand over at the end of this I/O turn, so that everything parsed from the same socket read
    // goes in one batch, without a timer that would add latency to a lone change.
    if (this.waiter !== null && !this.wakeScheduled) {
      this.wakeScheduled = true;
      setImmediate(() => {
        this.wakeScheduled = false;
        this.wake();
      });
    }
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private waitForPush(timeoutMs: number | null): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | null = null;
      this.waiter = () => {
        if (timer !== null) clearTimeout(timer);
        resolve();
      };
      if (timeoutMs !== null) {
        timer = setTimeout(() => this.wake(), timeoutMs);
      }
    });
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }
}
