import { createHash } from 'node:crypto';
import { Cluster, type Redis } from 'ioredis';
import type { DeadLetter } from '../../core/change.js';
import { escapeGlob } from '../../core/glob.js';
import { SinkUnavailableError, toError } from '../../errors.js';
import { appliedKey } from '../../lib/cache-keys.js';
import { keySlot, sameSlotName } from '../../lib/cluster-slot.js';
import type { Logger } from '../../log.js';
import type { Sink, SinkBatch } from '../../ports/sink.js';
import { CLUSTER_BUMP_SCRIPT, deleteCommands, isRedirection, keyCommands, type ClusterCommand } from './cluster-commands.js';
import { forEachLimited } from './limited.js';
import { planNotifications } from './notify.js';
import { planBatch, type RedisPlan } from './plan.js';
import { APPLIED_POSITION_SCRIPT } from './scripts.js';
import { connectionSettings, failureWithCause, hostAndPort } from '../../lib/redis-connection.js';
import { deadLetterFields, DEAD_LETTER_MAXLEN, type RedisSinkOptions } from './redis-sink.js';

export interface RedisClusterSinkOptions extends Omit<RedisSinkOptions, 'url'> {
  /** Seed nodes (redis:// or rediss:// URLs); the rest of the cluster is discovered from them. */
  seeds: readonly string[];
  /**
   * Replicas each master must have received a batch's writes on (WAIT) before it counts as applied:
   * a master that fails right after answering then cannot take acknowledged invalidations with it.
   * 0: not waited for.
   */
  waitReplicas?: number;
  /** How long WAIT may take; fewer replicas than asked by then fails the batch (it is retried). */
  waitTimeoutMs?: number;
}

/**
 * Takes up to ARGV[1] members of a tag set (KEYS[1]) into its pending set (KEYS[2], the same slot)
 * and returns them; members left pending by an attempt that failed come first. The members are then
 * deleted on whichever nodes hold them, and only then removed from the pending set: a crash at any
 * point leaves them where the next attempt finds them, and a member the application registers again
 * meanwhile goes to the tag set, not lost with the pending one.
 */
const TAG_TAKE_SCRIPT = `
local members = redis.call('SRANDMEMBER', KEYS[2], ARGV[1])
if #members > 0 then return members end
members = redis.call('SPOP', KEYS[1], ARGV[1])
if #members > 0 then redis.call('SADD', KEYS[2], unpack(members)) end
return members`;

const DEFAULT_TAG_STEP_SIZE = 1000;
const DEFAULT_SCAN_COUNT = 1000;
const TAG_CONCURRENCY = 8;

const sha1 = (script: string): string => createHash('sha1').update(script).digest('hex');

/**
 * The sink for Redis Cluster. A batch's keys are grouped by the master that serves their slot and
 * sent as one pipeline per master, all at once; every reply is checked. Nothing spans slots: each
 * key is deleted with its lease (kept in the key's slot, see clusterLeaseKey), each version key
 * bumped by a one-key script. A command answered with MOVED or ASK (a slot moving or a failover),
 * TRYAGAIN, CLUSTERDOWN or NOSCRIPT did nothing: those are sent again one at a time, in the batch's
 * order, through ioredis, which follows the redirection; any other error fails the batch, which the
 * worker retries whole (every step is idempotent). The applied position is stored last, after every
 * key of the batch is gone.
 */
export class RedisClusterSink implements Sink {
  private readonly cluster: Cluster;
  private lastAttemptFailed = false;
  private lastConnectionError: Error | null = null;
  private readonly scripts = new Map<string, string>();
  private readonly bumpSha = this.script(CLUSTER_BUMP_SCRIPT);
  private readonly positionSha = this.script(APPLIED_POSITION_SCRIPT);
  private readonly tagTakeSha = this.script(TAG_TAKE_SCRIPT);
  private readonly deadLetterStream: string;
  private readonly appliedKey: string;
  private readonly leasePrefix: string | null;
  private readonly tagStepSize: number;
  private readonly scanCount: number;
  private readonly log: Logger;
  readonly target: string;

  constructor(private readonly options: RedisClusterSinkOptions) {
    this.cluster = new Cluster(options.seeds.map((url) => hostAndPort(url)), {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableReadyCheck: true,
      scaleReads: 'master',
      maxRedirections: 16,
      retryDelayOnMoved: 0,
      retryDelayOnFailover: 200,
      retryDelayOnClusterDown: 200,
      retryDelayOnTryAgain: 200,
      slotsRefreshTimeout: 2_000,
      // Reconnect for ever in the background; batches fail fast meanwhile and the worker retries.
      clusterRetryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
      redisOptions: { ...connectionSettings(options.seeds[0]!, options.commandTimeoutMs), enableAutoPipelining: false },
    });
    this.cluster.on('error', (err: unknown) => {
      this.lastConnectionError = toError(err);
      options.logger.debug({ err: this.lastConnectionError }, 'redis cluster connection error');
    });
    this.cluster.on('ready', () => {
      this.lastConnectionError = null;
    });
    this.target = `cluster (seeds ${options.seeds.map((u) => new URL(u).host).join(', ')})`;
    this.deadLetterStream = `${options.keyPrefix}cdc-invalidator:dead-letters`;
    this.appliedKey = appliedKey(options.keyPrefix);
    this.leasePrefix = options.leasePrefix ?? null;
    this.tagStepSize = Math.max(1, options.tagStepSize ?? DEFAULT_TAG_STEP_SIZE);
    this.scanCount = Math.max(1, options.scanCount ?? DEFAULT_SCAN_COUNT);
    this.log = options.logger.child({ component: 'redis-cluster-sink' });
  }

  private script(text: string): string {
    const sha = sha1(text);
    this.scripts.set(sha, text);
    return sha;
  }

  async connect(): Promise<void> {
    try {
      if (this.cluster.status === 'wait') await this.cluster.connect();
      await Promise.all(this.cluster.nodes('master').map((node) => node.ping()));
      this.lastAttemptFailed = false;
    } catch (err) {
      this.lastAttemptFailed = true;
      throw new SinkUnavailableError(`redis cluster unreachable: ${failureWithCause(err, this.lastConnectionError)}`, err);
    }
  }

  isConnected(): boolean {
    return this.cluster.status === 'ready' && !this.lastAttemptFailed;
  }

  async apply(batch: SinkBatch): Promise<void> {
    const position = batch.appliedPosition ?? null;
    if (batch.operations.length === 0 && batch.deadLetters.length === 0 && position === null) return;
    const plan = planBatch(batch.operations, this.options.keyPrefix);
    try {
      const commands = keyCommands(plan, this.options.deleteCommand, this.leasePrefix, this.bumpSha);
      for (const letter of batch.deadLetters) commands.push(this.deadLetterCommand(letter));
      await this.send(commands, 'batch');
      if (plan.tags.length > 0) await this.invalidateTags(plan);
      if (plan.patterns.length > 0) await this.invalidatePatterns(plan);
      if (position !== null) await this.send([{ key: this.appliedKey, name: 'EVALSHA', args: [this.positionSha, '1', this.appliedKey, position] }], 'applied position');
      if (this.options.notifyChannel !== undefined) await this.notify(plan, this.options.notifyChannel);
    } catch (err) {
      this.lastAttemptFailed = true;
      throw err;
    }
    this.lastAttemptFailed = false;
  }

  /**
   * Sends commands grouped by the master serving their slot, one pipeline per master, all at once,
   * then waits for replicas when asked. Resolves with every reply in order, or throws
   * SinkUnavailableError naming the first error.
   */
  private async send(commands: readonly ClusterCommand[], what: string): Promise<unknown[]> {
    if (commands.length === 0) return [];
    const replies: unknown[] = new Array(commands.length);
    const groups = new Map<string, number[]>();
    for (let i = 0; i < commands.length; i++) {
      const owner = this.cluster.slots[keySlot(commands[i]!.key)]?.[0] ?? '';
      let group = groups.get(owner);
      if (group === undefined) groups.set(owner, (group = []));
      group.push(i);
    }
    const again: number[] = [];
    let failure: Error | null = null;
    await Promise.all(
      [...groups.values()].map(async (indexes) => {
        const pipeline = this.cluster.pipeline();
        for (const i of indexes) pipeline.callBuffer(commands[i]!.name, ...commands[i]!.args);
        let results: [Error | null, unknown][] | null;
        try {
          results = await pipeline.exec();
        } catch {
          // Refused whole (the slots moved between grouping and sending, or the node is gone): each
          // command goes again on its own, where ioredis finds the node.
          again.push(...indexes);
          return;
        }
        indexes.forEach((i, k) => {
          const [err, reply] = results?.[k] ?? [new Error('no reply'), null];
          if (err === null) replies[i] = reply;
          else if (isRedirection(err)) again.push(i);
          else failure ??= err;
        });
      }),
    );
    if (failure !== null) throw new SinkUnavailableError(`redis cluster ${what} failed: ${toError(failure).message}`, failure);
    if (again.length > 0) {
      this.log.debug({ commands: again.length, of: commands.length, what }, 'redirected: sent again one at a time');
      again.sort((a, b) => a - b);
      for (const i of again) replies[i] = await this.sendOne(commands[i]!, what);
      // The slots as they are now, so that WAIT goes to the masters that took the writes.
      if ((this.options.waitReplicas ?? 0) > 0) await new Promise<void>((resolve) => this.cluster.refreshSlotsCache(() => resolve()));
      else this.cluster.refreshSlotsCache();
    }
    await this.waitForReplicas(commands, what);
    return replies;
  }

  /** One command through ioredis' cluster routing (MOVED and ASK followed); a script by its text. */
  private async sendOne(command: ClusterCommand, what: string): Promise<unknown> {
    try {
      if (command.name === 'EVALSHA') {
        const [sha, ...rest] = command.args;
        return await this.cluster.callBuffer('EVAL', this.scripts.get(String(sha))!, ...rest);
      }
      return await this.cluster.callBuffer(command.name, ...command.args);
    } catch (err) {
      throw new SinkUnavailableError(`redis cluster ${what} failed: ${toError(err).message}`, err);
    }
  }

  /** WAIT on each master that took a write, when replicas are asked for. */
  private async waitForReplicas(commands: readonly ClusterCommand[], what: string): Promise<void> {
    const replicas = this.options.waitReplicas ?? 0;
    if (replicas === 0) return;
    const owners = new Set<string>();
    for (const c of commands) owners.add(this.cluster.slots[keySlot(c.key)]?.[0] ?? '');
    const timeoutMs = this.options.waitTimeoutMs ?? 1_000;
    await Promise.all(
      [...owners].map(async (owner) => {
        const node = this.masterByKey(owner);
        if (node === undefined) throw new SinkUnavailableError(`redis cluster ${what}: no connection to ${owner || 'the slot owner'} to WAIT on`);
        let acked: number;
        try {
          acked = Number(await node.call('WAIT', String(replicas), String(timeoutMs)));
        } catch (err) {
          throw new SinkUnavailableError(`redis cluster ${what}: WAIT on ${owner} failed: ${toError(err).message}`, err);
        }
        if (acked < replicas) {
          throw new SinkUnavailableError(`redis cluster ${what}: ${acked} of ${replicas} replicas of ${owner} acknowledged within ${timeoutMs} ms`);
        }
      }),
    );
  }

  private masterByKey(nodeKey: string): Redis | undefined {
    return this.cluster.nodes('master').find((n) => `${n.options.host}:${n.options.port}` === nodeKey);
  }

  private deadLetterCommand(letter: DeadLetter): ClusterCommand {
    return {
      key: this.deadLetterStream,
      name: 'XADD',
      args: [this.deadLetterStream, 'MAXLEN', '~', String(DEAD_LETTER_MAXLEN), '*', ...deadLetterFields(letter)],
    };
  }

  private async invalidateTags(plan: RedisPlan): Promise<void> {
    await forEachLimited(plan.tags, TAG_CONCURRENCY, async ({ setKey }) => {
      const pending = sameSlotName('', setKey, ':pending');
      for (;;) {
        // Without a pending set in the tag's slot (a tag with a '}' and no hash tag), members are
        // read, deleted, then removed: a member registered again in between is removed with them.
        const members = (await this.sendOne(
          pending === null
            ? { key: setKey, name: 'SRANDMEMBER', args: [setKey, String(this.tagStepSize)] }
            : { key: setKey, name: 'EVALSHA', args: [this.tagTakeSha, '2', setKey, pending, String(this.tagStepSize)] },
          'tag invalidation',
        )) as Buffer[];
        if (members.length === 0) return;
        await this.send(deleteCommands(members, this.options.deleteCommand, this.leasePrefix), 'tag invalidation');
        await this.sendOne({ key: setKey, name: 'SREM', args: [pending ?? setKey, ...members] }, 'tag invalidation');
      }
    });
  }

  /**
   * SCAN on every master, page by page, each page's keys deleted (with their leases) where they
   * live; then the leases of matching keys being filled, which do not exist as keys yet.
   */
  private async invalidatePatterns(plan: RedisPlan): Promise<void> {
    const lease = this.leasePrefix;
    for (const match of plan.patterns) {
      await this.scanAndDelete(match, lease);
      if (lease !== null) {
        // A lease is either `<prefix><key>` or `<prefix>{<key>}`.
        await this.scanAndDelete(escapeGlob(lease) + match, null);
        await this.scanAndDelete(`${escapeGlob(`${lease}{`)}${match}${escapeGlob('}')}`, null);
      }
    }
  }

  private async scanAndDelete(match: string, leasePrefix: string | null): Promise<void> {
    const masters = this.cluster.nodes('master');
    if (masters.length === 0) throw new SinkUnavailableError('redis cluster pattern invalidation failed: no master connected');
    await Promise.all(
      masters.map(async (node) => {
        let cursor = '0';
        do {
          let next: Buffer;
          let keys: Buffer[];
          try {
            [next, keys] = await node.scanBuffer(cursor, 'MATCH', match, 'COUNT', this.scanCount);
          } catch (err) {
            throw new SinkUnavailableError(`redis cluster pattern invalidation failed: ${toError(err).message}`, err);
          }
          if (keys.length > 0) await this.send(deleteCommands(keys, this.options.deleteCommand, leasePrefix), 'pattern invalidation');
          cursor = next.toString();
        } while (cursor !== '0');
      }),
    );
  }

  /** PUBLISH on a cluster reaches subscribers on every node. */
  private async notify(plan: RedisPlan, channel: string): Promise<void> {
    const messages = planNotifications(plan);
    try {
      await Promise.all(messages.map((message) => this.cluster.publish(channel, message)));
    } catch (err) {
      throw new SinkUnavailableError(`redis cluster publish failed: ${toError(err).message}`, err);
    }
  }

  async close(): Promise<void> {
    if (this.cluster.status === 'end') return;
    try {
      await this.cluster.quit();
    } catch {
      this.cluster.disconnect();
    }
  }
}
