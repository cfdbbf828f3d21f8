import { Redis } from 'ioredis';
import { connectionSettings, failureWithCause, sentinelSettings, type SentinelTarget } from '../../lib/redis-connection.js';
import { escapeGlob } from '../../core/glob.js';
import type { DeadLetter } from '../../core/change.js';
import { SinkUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Sink, SinkBatch } from '../../ports/sink.js';
import { forEachLimited } from './limited.js';
import { planNotifications, publishAll } from './notify.js';
import { invalidatePattern } from './patterns.js';
import { planBatch, type RedisPlan } from './plan.js';
import { appliedKey } from '../../lib/cache-keys.js';
import { APPLIED_POSITION_SCRIPT, APPLY_BATCH_SCRIPT, isNoScript, ScriptCache } from './scripts.js';
import { invalidateTag } from './tags.js';

export interface RedisSinkOptions {
  /** One server; ignored when `sentinel` is given. */
  url: string;
  /** The primary of a Sentinel set, followed through failovers. */
  sentinel?: SentinelTarget | undefined;
  keyPrefix: string;
  deleteCommand: 'del' | 'unlink';
  /**
   * Prefix of the cache client's lease keys: deleting key K deletes `<leasePrefix>K` in the same
   * step, so a fill that began before the change cannot land after it. Null: leases are off.
   */
  leasePrefix?: string | null;
  /** Where the keys, tags and patterns of each applied batch are published; none when unset. */
  notifyChannel?: string | undefined;
  /** How long one Redis command may take before the batch counts as failed and is retried. */
  commandTimeoutMs?: number;
  /** Tag members popped and deleted per script call (at most 5000, Lua's unpack limit). */
  tagStepSize?: number;
  /** SCAN COUNT hint for patterns. */
  scanCount?: number;
  /**
   * Replicas that must have the batch's writes (WAIT) before it counts as applied: a primary that
   * fails right after answering then cannot take acknowledged invalidations with it. 0: not waited.
   */
  waitReplicas?: number;
  /** How long WAIT may take; fewer replicas than asked by then fails the batch (it is retried). */
  waitTimeoutMs?: number;
  logger: Logger;
}

/** Dead letters kept in the stream; older ones are trimmed (approximately). */
export const DEAD_LETTER_MAXLEN = 100_000;
const DEFAULT_TAG_STEP_SIZE = 1000;
const MAX_TAG_STEP_SIZE = 5000;
const DEFAULT_SCAN_COUNT = 1000;
/** Tags invalidated at once: their steps are pipelined on the one connection. */
const TAG_CONCURRENCY = 32;
/** Patterns scanned at once: each walks the whole keyspace, so only a few. */
const PATTERN_CONCURRENCY = 4;

/**
 * Applies a batch in up to three phases, each of which may be repeated safely:
 * 1. deletes, bumps, the applied position and dead letters in one script call (APPLY_BATCH_SCRIPT):
 *    one command, atomic like MULTI/EXEC, and one round trip;
 * 2. tags and patterns, which can touch any number of keys and so cannot fit in one transaction:
 *    bounded steps, each atomic, that carry on where a failed attempt stopped;
 * 3. notifications, published last, so a subscriber never reloads a key before it is gone.
 * A failure anywhere throws SinkUnavailableError and the worker retries the whole batch; phases
 * already done are done again, which changes nothing. ioredis is kept from retrying or queueing
 * on its own; the worker loop owns retries.
 */
export class RedisSink implements Sink {
  private readonly client: Redis;
  private lastAttemptFailed = false;
  /** The connection's last error event, named when connecting fails. */
  private lastConnectionError: Error | null = null;
  private readonly scripts: ScriptCache;
  private readonly deadLetterStream: string;
  private readonly appliedKey: string;
  private readonly tagStepSize: number;
  private readonly scanCount: number;
  private readonly log: Logger;
  readonly target: string;

  constructor(private readonly options: RedisSinkOptions) {
    // Reconnect forever in the background, capped at 2 s; batches fail fast meanwhile.
    const retryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 6), 2_000);
    const sentinel = options.sentinel;
    const client =
      sentinel === undefined
        ? new Redis(options.url, { ...connectionSettings(options.url, options.commandTimeoutMs), lazyConnect: true, enableOfflineQueue: false, retryStrategy })
        : new Redis(sentinelSettings(sentinel, options.commandTimeoutMs, retryStrategy));
    this.scripts = new ScriptCache(client);
    // A restarted Redis has an empty script cache.
    client.on('ready', () => this.scripts.reset());
    // Without a listener ioredis prints every connection error to stderr; the worker logs retries.
    client.on('error', (err: unknown) => {
      this.lastConnectionError = toError(err);
      options.logger.debug({ err: this.lastConnectionError }, 'redis connection error');
    });
    client.on('ready', () => {
      this.lastConnectionError = null;
    });
    this.client = client;
    this.target = describeTarget(options);
    this.deadLetterStream = `${options.keyPrefix}cdc-invalidator:dead-letters`;
    this.appliedKey = appliedKey(options.keyPrefix);
    this.tagStepSize = Math.min(Math.max(1, options.tagStepSize ?? DEFAULT_TAG_STEP_SIZE), MAX_TAG_STEP_SIZE);
    this.scanCount = Math.max(1, options.scanCount ?? DEFAULT_SCAN_COUNT);
    this.log = options.logger.child({ component: 'redis-sink' });
  }

  async connect(): Promise<void> {
    try {
      if (this.client.status === 'wait') await this.client.connect();
      await this.client.ping();
      this.lastAttemptFailed = false;
    } catch (err) {
      this.lastAttemptFailed = true;
      // "Connection is closed" says little; the connection's own error (refused, WRONGPASS,
      // NOAUTH, a TLS failure) says what to fix.
      throw new SinkUnavailableError(`redis unreachable: ${failureWithCause(err, this.lastConnectionError)}`, err);
    }
  }

  /**
   * Connected, and the last attempt to use the connection worked: a hung Redis keeps ioredis'
   * status "ready" while every command times out.
   */
  isConnected(): boolean {
    return this.client.status === 'ready' && !this.lastAttemptFailed;
  }

  async apply(batch: SinkBatch): Promise<void> {
    const position = batch.appliedPosition ?? null;
    if (batch.operations.length === 0 && batch.deadLetters.length === 0 && position === null) return;
    const plan = planBatch(batch.operations, this.options.keyPrefix);
    // The position may go with the transaction only when nothing is left after it.
    const positionLast = plan.tags.length > 0 || plan.patterns.length > 0;
    try {
      await this.applyTransaction(plan, batch.deadLetters, positionLast ? null : position);
      if (plan.tags.length > 0) await this.invalidateTags(plan);
      if (plan.patterns.length > 0) await this.invalidatePatterns(plan);
      if (positionLast && position !== null) await this.storePosition(position);
      await this.waitForReplicas();
      if (this.options.notifyChannel !== undefined) await this.notify(plan, this.options.notifyChannel);
    } catch (err) {
      this.lastAttemptFailed = true;
      throw err;
    }
    this.lastAttemptFailed = false;
  }

  /** WAIT until the replicas asked for have everything this connection wrote. */
  private async waitForReplicas(): Promise<void> {
    const replicas = this.options.waitReplicas ?? 0;
    if (replicas === 0) return;
    const timeoutMs = this.options.waitTimeoutMs ?? 1_000;
    let acked: number;
    try {
      acked = Number(await this.client.call('WAIT', String(replicas), String(timeoutMs)));
    } catch (err) {
      throw new SinkUnavailableError(`redis WAIT failed: ${toError(err).message}`, err);
    }
    if (acked < replicas) throw new SinkUnavailableError(`redis: ${acked} of ${replicas} replicas acknowledged the batch within ${timeoutMs} ms`);
  }

  private async storePosition(position: string): Promise<void> {
    try {
      const sha = await this.scripts.sha(APPLIED_POSITION_SCRIPT);
      await this.client.evalsha(sha, 1, this.appliedKey, position);
    } catch (err) {
      if (isNoScript(toError(err))) this.scripts.reset();
      throw new SinkUnavailableError(`redis could not store the applied position: ${toError(err).message}`, err);
    }
  }

  private async applyTransaction(plan: RedisPlan, deadLetters: readonly DeadLetter[], position: string | null): Promise<void> {
    const { deletes, bumpTo, increments } = plan;
    if (deletes.length === 0 && bumpTo.length === 0 && increments.length === 0 && deadLetters.length === 0 && position === null) return;
    const leasePrefix = this.options.leasePrefix ?? null;
    const keys: string[] = [...deletes];
    if (leasePrefix !== null) for (const key of deletes) keys.push(leasePrefix + key);
    const deleteCount = keys.length;
    for (const [key] of bumpTo) keys.push(key);
    for (const key of increments) keys.push(key);
    const args: string[] = [
      this.options.deleteCommand === 'unlink' ? 'UNLINK' : 'DEL',
      String(deleteCount),
      String(bumpTo.length),
      String(increments.length),
      position === null ? '0' : '1',
      String(deadLetters.length),
      String(DEAD_LETTER_MAXLEN),
    ];
    for (const [, version] of bumpTo) args.push(version);
    if (position !== null) {
      keys.push(this.appliedKey);
      args.push(position);
    }
    if (deadLetters.length > 0) {
      keys.push(this.deadLetterStream);
      for (const letter of deadLetters) args.push(...deadLetterFields(letter));
    }
    try {
      await this.scripts.run(APPLY_BATCH_SCRIPT, keys, args);
    } catch (err) {
      if (err instanceof SinkUnavailableError) throw err;
      throw new SinkUnavailableError(`redis batch failed: ${toError(err).message}`, err);
    }
  }

  private async invalidateTags(plan: RedisPlan): Promise<void> {
    let steps = 0;
    try {
      await forEachLimited(plan.tags, TAG_CONCURRENCY, async ({ setKey }) => {
        steps += await invalidateTag(this.scripts, setKey, this.tagStepSize, this.options.deleteCommand, this.options.leasePrefix ?? '');
      });
    } catch (err) {
      throw new SinkUnavailableError(`redis tag invalidation failed: ${toError(err).message}`, err);
    }
    this.log.debug({ tags: plan.tags.length, steps }, 'tags invalidated');
  }

  private async invalidatePatterns(plan: RedisPlan): Promise<void> {
    let deleted = 0;
    try {
      const leasePrefix = this.options.leasePrefix ?? '';
      await forEachLimited(plan.patterns, PATTERN_CONCURRENCY, async (match) => {
        deleted += await invalidatePattern(this.client, match, this.scanCount, this.options.deleteCommand, leasePrefix);
        // A key being filled does not exist yet, so the scan above cannot find its lease: the
        // leases of matching keys are scanned for themselves.
        if (leasePrefix !== '') {
          await invalidatePattern(this.client, escapeGlob(leasePrefix) + match, this.scanCount, this.options.deleteCommand);
        }
      });
    } catch (err) {
      throw new SinkUnavailableError(`redis pattern invalidation failed: ${toError(err).message}`, err);
    }
    this.log.debug({ patterns: plan.patterns.length, deleted }, 'patterns invalidated');
  }

  /**
   * A notification that is not sent leaves an in-process cache stale, so a failed PUBLISH fails the
   * batch like any other command: the retry applies it again (harmless) and publishes again.
   * Subscribers can therefore see a batch more than once, never not at all while they listen.
   */
  private async notify(plan: RedisPlan, channel: string): Promise<void> {
    const messages = planNotifications(plan);
    try {
      await publishAll(this.client, channel, messages);
    } catch (err) {
      throw new SinkUnavailableError(`redis publish failed: ${toError(err).message}`, err);
    }
  }

  async close(): Promise<void> {
    if (this.client.status === 'end') return;
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** host:port (and /db), or the Sentinel set: never the user or password. */
function describeTarget(options: RedisSinkOptions): string {
  if (options.sentinel !== undefined) return `sentinel set ${options.sentinel.name} (${options.sentinel.nodes.map((u) => new URL(u).host).join(', ')})`;
  const u = new URL(options.url);
  return `${u.host}${u.pathname.length > 1 ? u.pathname : ''}`;
}

/** DEAD_LETTER_FIELDS strings: names and values. */
export function deadLetterFields(letter: DeadLetter): string[] {
  return [
    'table',
    `${letter.schema}.${letter.table}`,
    'op',
    letter.op,
    'position',
    letter.position,
    'reason',
    letter.reason,
    'detail',
    letter.detail,
    'key',
    letter.key === null ? '' : JSON.stringify(letter.key),
  ];
}
