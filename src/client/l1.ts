import { globMatch } from './glob.js';

interface Entry {
  value: unknown;
  expiresAt: number;
  tags: readonly string[];
}

/**
 * A bounded in-process map with a TTL per entry, in front of Redis. Least recently used entries go
 * first when it is full (a Map keeps insertion order; a hit moves the entry to the end). Entries are
 * indexed by tag so a notified tag drops exactly the entries stored under it.
 *
 * `epoch` counts invalidations seen (notifications, clears). A caller that read a value from Redis
 * stores it only if no invalidation arrived since the read began (`set(..., epochAtRead)`): otherwise
 * the value may be one the worker has already deleted and announced, and would live on in L1.
 */
export class L1Cache {
  private readonly entries = new Map<string, Entry>();
  private readonly byTag = new Map<string, Set<string>>();
  private epochValue = 0;

  constructor(
    readonly maxEntries: number,
    readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  get epoch(): number {
    return this.epochValue;
  }

  get size(): number {
    return this.entries.size;
  }

  /** `found` false when there is no live entry; a stored `undefined` is a cached "not found". */
  get(fullKey: string): { found: boolean; value: unknown } {
    const entry = this.entries.get(fullKey);
    if (entry === undefined) return { found: false, value: undefined };
    if (entry.expiresAt <= this.now()) {
      this.remove(fullKey);
      return { found: false, value: undefined };
    }
    this.entries.delete(fullKey);
    this.entries.set(fullKey, entry);
    return { found: true, value: entry.value };
  }

  /** Stores the value unless an invalidation arrived after `epochAtRead`. */
  set(fullKey: string, value: unknown, tags: readonly string[], epochAtRead: number, ttlMs = this.ttlMs): boolean {
    if (epochAtRead !== this.epochValue || ttlMs <= 0) return false;
    this.remove(fullKey);
    while (this.entries.size >= this.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.remove(oldest);
    }
    this.entries.set(fullKey, { value, expiresAt: this.now() + ttlMs, tags });
    for (const tag of tags) {
      let keys = this.byTag.get(tag);
      if (keys === undefined) this.byTag.set(tag, (keys = new Set()));
      keys.add(fullKey);
    }
    return true;
  }

  delete(fullKey: string): void {
    this.epochValue++;
    this.remove(fullKey);
  }

  /** Applies one notification: full key names, tag names, globs over full key names. */
  invalidate(keys: readonly string[], tags: readonly string[], patterns: readonly string[]): void {
    this.epochValue++;
    for (const key of keys) this.remove(key);
    for (const tag of tags) {
      const members = this.byTag.get(tag);
      if (members === undefined) continue;
      for (const key of [...members]) this.remove(key);
    }
    if (patterns.length > 0) {
      for (const key of [...this.entries.keys()]) {
        if (patterns.some((pattern) => globMatch(pattern, key))) this.remove(key);
      }
    }
  }

  clear(): void {
    this.epochValue++;
    this.entries.clear();
    this.byTag.clear();
  }

  private remove(fullKey: string): void {
    const entry = this.entries.get(fullKey);
    if (entry === undefined) return;
    this.entries.delete(fullKey);
    for (const tag of entry.tags) {
      const keys = this.byTag.get(tag);
      if (keys === undefined) continue;
      keys.delete(fullKey);
      if (keys.size === 0) this.byTag.delete(tag);
    }
  }
}
