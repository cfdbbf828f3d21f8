import { Redis } from 'ioredis';
import type { DeadLetter, KeyOperation } from '../../core/change.js';
import { SinkUnavailableError, toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { Sink, SinkBatch } from '../sink.js';

export interface RedisSinkOptions {
  url: string;
  keyPrefix: string;
  deleteCommand: 'del' | 'unlink';
  /** How long one batch may take before it counts as failed and is retried. */
  commandTimeoutMs?: number;
  logger: Logger;
}

/** Keys per DEL/UNLINK or per bump script call: keeps single commands short on the server. */
const KEYS_PER_COMMAND = 500;
/** Dead letters kept in the stream; older ones are trimmed (approximately). */
const DEAD_LETTER_MAXLEN = 100_000;

/**
 * Sets each version key to its new value when that is greater than the stored one: versions are
 * decimal strings of any length (an LSN can pass 2^53, where Lua numbers lose precision), so they
 * compare by length first, then by digits. KEEPTTL leaves any TTL the application set.
 */
const BUMP_TO_SCRIPT = `
for i, key in ipairs(KEYS) do
  local new = ARGV[i]
  local cur = redis.call('GET', key)
  if (not cur) or #cur < #new or (#cur == #new and cur < new) then
    redis.call('SET', key, new, 'KEEPTTL')
  end
end
return #KEYS`;


/**
 * Applies a batch in one MULTI/EXEC round trip: either all of it lands or none of it does, so a
 * retry after a dropped connection never leaves a half-applied batch behind. ioredis is kept from
 * retrying or queueing on its own; the worker loop owns retries.
 */
export class RedisSink implements Sink {
  private readonly client: Redis;
  private readonly deadLetterStream: string;
  /** SHA of the bump script once loaded on the current connection; a new connection reloads it. */
  private bumpSha: string | null = null;

  constructor(private readonly options: RedisSinkOptions) {
    const client = new Redis(options.url, {
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      commandTimeout: options.commandTimeoutMs ?? 10_000,
      connectTimeout: 5_000,
      // Reconnect forever in the background, capped at 2 s; batches fail fast meanwhile.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2_000),
      connectionName: 'cdc-invalidator',
    });
    // A restarted Redis has an empty script cache. (ioredis' own NOSCRIPT fallback resends the
    // script outside the MULTI, which would break the batch's all-or-nothing, so it is not used.)
    client.on('ready', () => {
      this.bumpSha = null;
    });
    // Without a listener ioredis prints every connection error to stderr; the worker logs retries.
    client.on('error', (err: unknown) => options.logger.debug({ err: toError(err) }, 'redis connection error'));
    this.client = client;
    this.deadLetterStream = `${options.keyPrefix}cdc-invalidator:dead-letters`;
  }

  async connect(): Promise<void> {
    try {
      if (this.client.status === 'wait') await this.client.connect();
      await this.client.ping();
    } catch (err) {
      throw new SinkUnavailableError(`redis unreachable: ${toError(err).message}`, err);
    }
  }

  isConnected(): boolean {
    return this.client.status === 'ready';
  }

  async apply(batch: SinkBatch): Promise<void> {
    if (batch.operations.length === 0 && batch.deadLetters.length === 0) return;
    const { deletes, bumpTo, increments } = this.plan(batch.operations);
    const bumpSha = bumpTo.length > 0 ? await this.loadBumpScript() : '';
    const multi = this.client.multi();
    for (let i = 0; i < deletes.length; i += KEYS_PER_COMMAND) {
      const keys = deletes.slice(i, i + KEYS_PER_COMMAND);
      if (this.options.deleteCommand === 'unlink') multi.unlink(...keys);
      else multi.del(...keys);
    }
    for (let i = 0; i < bumpTo.length; i += KEYS_PER_COMMAND) {
      const chunk = bumpTo.slice(i, i + KEYS_PER_COMMAND);
      multi.evalsha(bumpSha, chunk.length, ...chunk.map(([key]) => key), ...chunk.map(([, version]) => version));
    }
    for (const key of increments) multi.incr(key);
    for (const letter of batch.deadLetters) {
      multi.xadd(this.deadLetterStream, 'MAXLEN', '~', String(DEAD_LETTER_MAXLEN), '*', ...deadLetterFields(letter));
    }

    let results: [Error | null, unknown][] | null;
    try {
      results = await multi.exec();
    } catch (err) {
      throw new SinkUnavailableError(`redis batch failed: ${toError(err).message}`, err);
    }
    if (results === null) throw new SinkUnavailableError('redis transaction was aborted');
    // EXEC runs every queued command even when one fails: each reply must be checked.
    for (const [err] of results) {
      if (err !== null) {
        if (err.message.includes('NOSCRIPT')) this.bumpSha = null;
        throw new SinkUnavailableError(`redis command failed: ${err.message}`, err);
      }
    }
  }

  private async loadBumpScript(): Promise<string> {
    if (this.bumpSha !== null) return this.bumpSha;
    try {
      this.bumpSha = (await this.client.script('LOAD', BUMP_TO_SCRIPT)) as string;
      return this.bumpSha;
    } catch (err) {
      throw new SinkUnavailableError(`redis script load failed: ${toError(err).message}`, err);
    }
  }

  /** Deduplicates within the batch: one DEL per key, one bump per version key (the greatest). */
  private plan(operations: readonly KeyOperation[]): {
    deletes: string[];
    bumpTo: [string, string][];
    increments: string[];
  } {
    const prefix = this.options.keyPrefix;
    const deletes = new Set<string>();
    const bumpTo = new Map<string, bigint>();
    const increments = new Set<string>();
    for (const op of operations) {
      const key = prefix + op.key;
      if (op.action === 'delete') {
        deletes.add(key);
      } else if (op.version === null) {
        increments.add(key);
      } else {
        const current = bumpTo.get(key);
        if (current === undefined || op.version > current) bumpTo.set(key, op.version);
      }
    }
    return {
      deletes: [...deletes],
      bumpTo: [...bumpTo].map(([key, version]) => [key, version.toString()]),
      increments: [...increments],
    };
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

function deadLetterFields(letter: DeadLetter): string[] {
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
