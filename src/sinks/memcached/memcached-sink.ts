import type { KeyOperation } from '../../core/change.js';
import { parseLsn } from '../../core/lsn.js';
import { appliedKey } from '../../lib/cache-keys.js';
import { planKeyOperations, type KeyPlan } from '../../lib/key-operations.js';
import { KetamaRing } from '../../lib/memcached/ketama.js';
import { splitServer } from '../../lib/memcached/servers.js';
import { MetaConnection, replyFlag, storableKey, type MetaCommand, type MetaReply } from '../../lib/memcached/meta-connection.js';
import { SinkUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Sink, SinkBatch } from '../../ports/sink.js';

export interface MemcachedSinkOptions {
  /** `host:port` of each server, as the application's client lists them (ketama places keys by these names). */
  servers: readonly string[];
  keyPrefix: string;
  /**
   * delete: `md` removes the item. mark-stale: `md I` marks it stale (and bumps its CAS) for
   * staleTtlSeconds: the next reader gets it with a win flag and refills it while the others are served
   * the stale value; a fill fenced by the old CAS cannot land.
   */
  invalidation: 'delete' | 'mark-stale';
  staleTtlSeconds: number;
  commandTimeoutMs: number;
  logger: Logger;
}

/** Compare-and-set rounds for one version key before the batch is failed (and retried). */
const CAS_ROUNDS = 16;

/**
 * Applies a batch to memcached servers over the meta protocol: deletes (or mark-stale deletes)
 * pipelined per server, version bumps that only ever go up (compare-and-set: Debian's memcached
 * 1.6.18 has no explicit-CAS flag), counters for sources without positions (`ma` with auto-create),
 * then the applied position. Every reply is checked; a failure throws SinkUnavailableError and the
 * worker retries the whole batch, which changes nothing already done. Memcached has no sets and no
 * SCAN: rules with tags or patterns are refused by `validate` for a memcached target; dead letters,
 * which have no stream here, go to the log.
 */
export class MemcachedSink implements Sink {
  readonly kind = 'memcached';
  readonly target: string;
  readonly #ring: KetamaRing;
  readonly #connections: MetaConnection[];
  readonly #options: MemcachedSinkOptions;
  readonly #log: Logger;
  readonly #appliedKey: string;
  #lastAttemptFailed = false;

  constructor(options: MemcachedSinkOptions) {
    this.#options = options;
    this.#ring = new KetamaRing(options.servers);
    this.#connections = options.servers.map((server) => {
      const { host, port } = splitServer(server);
      return new MetaConnection({ host, port, timeoutMs: options.commandTimeoutMs });
    });
    this.target = options.servers.join(',');
    this.#log = options.logger.child({ component: 'memcached-sink' });
    this.#appliedKey = appliedKey(options.keyPrefix);
  }

  async connect(): Promise<void> {
    try {
      await Promise.all(
        this.#connections.map(async (connection) => {
          await connection.connect();
          const [reply] = await connection.request([{ verb: 'mn' }]);
          if (reply?.code !== 'MN') throw new Error(`memcached ${connection.address} does not speak the meta protocol (mn answered ${reply?.error ?? reply?.code})`);
        }),
      );
      this.#lastAttemptFailed = false;
    } catch (err) {
      this.#lastAttemptFailed = true;
      throw new SinkUnavailableError(toError(err).message, err);
    }
  }

  isConnected(): boolean {
    return !this.#lastAttemptFailed && this.#connections.every((c) => c.connected);
  }

  async apply(batch: SinkBatch): Promise<void> {
    const position = batch.appliedPosition ?? null;
    if (batch.operations.length === 0 && batch.deadLetters.length === 0 && position === null) return;
    const plan = planOperations(batch.operations, this.#options.keyPrefix);
    try {
      await Promise.all([this.#deleteAll(plan.deletes), ...plan.bumpTo.map(([key, version]) => this.#raiseTo(key, version, compareDecimal)), this.#incrementAll(plan.increments)]);
      for (const letter of batch.deadLetters) this.#log.error({ deadLetter: letter }, 'dead letter (memcached keeps no dead-letter stream: the log is where it goes)');
      if (position !== null) await this.#raiseTo(this.#appliedKey, position, comparePositions);
    } catch (err) {
      this.#lastAttemptFailed = true;
      throw err instanceof SinkUnavailableError ? err : new SinkUnavailableError(`memcached: ${toError(err).message}`, err);
    }
    this.#lastAttemptFailed = false;
  }

  async close(): Promise<void> {
    for (const connection of this.#connections) connection.close();
  }

  /** The connection of the server that holds `key`. */
  #connectionFor(key: string): MetaConnection {
    return this.#connections[this.#ring.indexFor(key)]!;
  }

  /** The connection of a version key's server; a key memcached cannot hold fails the batch, named. */
  #versionConnection(key: string): MetaConnection {
    if (!storableKey(key)) throw new Error(`version key ${JSON.stringify(key)} is longer than memcached allows (250 bytes)`);
    return this.#connectionFor(key);
  }

  async #deleteAll(keys: readonly string[]): Promise<void> {
    const byServer = new Map<MetaConnection, string[]>();
    for (const key of keys) {
      // memcached refuses a longer key, so nothing can be cached under it: there is nothing to delete.
      if (!storableKey(key)) continue;
      const connection = this.#connectionFor(key);
      let list = byServer.get(connection);
      if (list === undefined) byServer.set(connection, (list = []));
      list.push(key);
    }
    const flags = this.#options.invalidation === 'mark-stale' ? ['I', `T${this.#options.staleTtlSeconds}`] : [];
    await Promise.all(
      [...byServer].map(async ([connection, list]) => {
        const replies = await this.#request(connection, list.map((key) => ({ verb: 'md', key, flags })));
        replies.forEach((reply, i) => {
          if (reply.code !== 'HD' && reply.code !== 'NF') throw unexpected(connection, `md ${list[i]}`, reply);
        });
      }),
    );
  }

  async #incrementAll(keys: readonly string[]): Promise<void> {
    await Promise.all(
      keys.map(async (key) => {
        const connection = this.#versionConnection(key);
        // Created at 1 when missing, as Redis' INCR does; no expiry.
        const [reply] = await this.#request(connection, [{ verb: 'ma', key, flags: ['N0', 'J1'] }]);
        if (reply!.code !== 'HD') throw unexpected(connection, `ma ${key}`, reply!);
      }),
    );
  }

  /**
   * Sets `key` to `value` unless it already holds one at or past it (by `compare`), keeping its
   * expiry: read with its CAS, then write with that CAS, again if someone wrote in between.
   */
  async #raiseTo(key: string, value: string, compare: (a: string, b: string) => number): Promise<void> {
    const connection = this.#versionConnection(key);
    const data = Buffer.from(value);
    for (let round = 0; round < CAS_ROUNDS; round++) {
      const [read] = await this.#request(connection, [{ verb: 'mg', key, flags: ['v', 'c', 't'] }]);
      let write: MetaCommand;
      if (read!.code === 'EN') {
        // Missing: add (ME), which fails if another writer got there first.
        write = { verb: 'ms', key, flags: ['ME'], value: data };
      } else if (read!.code === 'VA') {
        const current = read!.value!.toString('utf8');
        if (compare(current, value) >= 0) return;
        const ttl = replyFlag(read!, 't');
        const cas = replyFlag(read!, 'c');
        if (cas === undefined) throw unexpected(connection, `mg ${key}`, read!);
        write = { verb: 'ms', key, flags: [`C${cas}`, ...(ttl !== undefined && ttl !== '-1' ? [`T${ttl}`] : [])], value: data };
      } else {
        throw unexpected(connection, `mg ${key}`, read!);
      }
      const [written] = await this.#request(connection, [write]);
      if (written!.code === 'HD') return;
      // NS: added meanwhile; EX: changed meanwhile; NF: deleted meanwhile. Read again.
      if (written!.code !== 'NS' && written!.code !== 'EX' && written!.code !== 'NF') throw unexpected(connection, `ms ${key}`, written!);
    }
    throw new Error(`version key ${key} on ${connection.address} changed under every one of ${CAS_ROUNDS} compare-and-set rounds`);
  }

  async #request(connection: MetaConnection, commands: MetaCommand[]): Promise<MetaReply[]> {
    try {
      return await connection.request(commands);
    } catch (err) {
      throw new SinkUnavailableError(toError(err).message, err);
    }
  }
}

function unexpected(connection: MetaConnection, command: string, reply: MetaReply): Error {
  return new SinkUnavailableError(`memcached ${connection.address} answered ${reply.error ?? [reply.code, ...reply.flags].join(' ')} to ${command}`);
}

/** Decimal strings of any length, as versions are (an LSN passes 2^53): by length, then by digits. */
function compareDecimal(a: string, b: string): number {
  if (!/^\d+$/.test(a)) return -1;
  return a.length !== b.length ? a.length - b.length : a < b ? -1 : a > b ? 1 : 0;
}

/** Applied positions: PostgreSQL LSNs (`X/Y`); one that does not parse is overwritten. */
function comparePositions(a: string, b: string): number {
  let x: bigint;
  let y: bigint;
  try {
    x = parseLsn(a);
  } catch {
    return -1;
  }
  try {
    y = parseLsn(b);
  } catch {
    return 1;
  }
  return x < y ? -1 : x > y ? 1 : 0;
}

/** What one batch asks of memcached: tags and patterns it cannot do, and validate refuses them first. */
export function planOperations(operations: readonly KeyOperation[], keyPrefix: string): KeyPlan {
  return planKeyOperations(operations, keyPrefix, (op) => {
    // Reaching here is a bug, never a silent skip.
    throw new Error(`memcached cannot act on ${op.action === 'tag' ? `tag "${op.tag}"` : `pattern "${op.pattern}"`}: it has no sets and no SCAN`);
  });
}
