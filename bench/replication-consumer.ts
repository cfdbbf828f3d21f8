// A minimal pgoutput consumer built from the project's own protocol parser and decoder, without the
// worker's queue, rules or sink: the yardstick the worker is compared with. With no handler it only
// counts changes (the decode ceiling); with one it awaits the handler for each change in turn.
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type { Change } from '../src/core/change.js';
import { maxLsn, ZERO_LSN, type Lsn } from '../src/core/lsn.js';
import { PgoutputDecoder } from '../src/sources/postgres/decoder.js';
import { parseCopyData, standbyStatusUpdate } from '../src/sources/postgres/protocol.js';
import { quoteIdent, quoteLiteral } from '../src/lib/pg/sql.js';
import { diffStats, procStats, type ProcStats } from './proc-stats.js';

export interface ConsumeOptions {
  url: string;
  slot: string;
  publication: string;
  /** Stop once this many changes have been handled. */
  expected: number;
  /** Awaited for each change, one at a time, in commit order. Absent: changes are only counted. */
  handle?: (change: Change) => Promise<unknown>;
  /** Give up after this long. */
  timeoutMs?: number;
  /**
   * Called for each change as soon as it is decoded, before anything else is done with it; the
   * consumer stops when it returns true (`expected` then only caps what is counted).
   */
  observe?: (change: Change) => boolean;
}

export interface ConsumeResult {
  changes: number;
  /** From the server's CopyBothResponse (replication started) to the last expected change handled. */
  seconds: number;
  /** This process's CPU time and syscalls over the same span. */
  process?: ProcStats | undefined;
}

/** Changes queued for the handler before the socket is paused, as the worker does. */
const HIGH_WATER = 20_000;

interface Connection {
  on(event: 'copyData', listener: (msg: { chunk: Buffer }) => void): void;
  once(event: 'replicationStart', listener: () => void): void;
  sendCopyFromChunk(chunk: Buffer): void;
  stream: { pause(): void; resume(): void };
}

export async function consume(options: ConsumeOptions): Promise<ConsumeResult> {
  const { expected, handle, observe } = options;
  const client = new pg.Client({ connectionString: options.url, replication: 'database' } as pg.ClientConfig);
  let settle!: { resolve: (r: ConsumeResult) => void; reject: (e: Error) => void };
  const result = new Promise<ConsumeResult>((resolve, reject) => {
    settle = { resolve, reject };
  });
  client.on('error', (err) => settle.reject(err));
  await client.connect();
  const connection = (client as unknown as { connection: Connection }).connection;

  const decoder = new PgoutputDecoder();
  let startedAt = Number.NaN;
  let startStats: ProcStats | undefined;
  let received = 0;
  let handled = 0;
  let finished = false;
  let lastLsn: Lsn = ZERO_LSN;
  const queue: (Change | undefined)[] = [];
  let head = 0;
  let draining = false;
  let paused = false;

  const finish = () => {
    if (finished) return;
    finished = true;
    const seconds = (performance.now() - startedAt) / 1000;
    settle.resolve({ changes: handled, seconds, process: diffStats(procStats('self'), startStats) });
  };

  const drain = async () => {
    draining = true;
    try {
      while (head < queue.length && !finished) {
        const change = queue[head]!;
        queue[head++] = undefined;
        await handle!(change);
        handled++;
        if (handled === expected) finish();
        if (paused && queue.length - head <= HIGH_WATER / 2) {
          paused = false;
          connection.stream.resume();
        }
        if (head > 65_536 && head * 2 > queue.length) {
          queue.splice(0, head);
          head = 0;
        }
      }
    } catch (err) {
      settle.reject(err instanceof Error ? err : new Error(String(err)));
    } finally {
      draining = false;
    }
  };

  const sink = {
    change(change: Change) {
      if (observe !== undefined && observe(change)) {
        finish();
        return;
      }
      if (received >= expected) return;
      received++;
      if (handle === undefined) {
        handled++;
        if (handled === expected) finish();
        return;
      }
      queue.push(change);
      if (!draining) void drain();
      if (!paused && queue.length - head >= HIGH_WATER) {
        paused = true;
        connection.stream.pause();
      }
    },
    commit() {},
  };

  connection.once('replicationStart', () => {
    startedAt = performance.now();
    startStats = procStats('self');
  });
  connection.on('copyData', ({ chunk }) => {
    if (finished) return;
    const msg = parseCopyData(chunk);
    if (msg === null) return;
    if (msg.kind === 'xlogdata') {
      lastLsn = maxLsn(lastLsn, msg.walStart);
      try {
        decoder.decode(msg.payload, sink);
      } catch (err) {
        settle.reject(err instanceof Error ? err : new Error(String(err)));
      }
    } else if (msg.replyRequested) {
      // Keeps the walsender from timing the connection out on a long run; confirms nothing.
      connection.sendCopyFromChunk(standbyStatusUpdate(lastLsn, ZERO_LSN, Date.now()));
    }
  });

  const timeoutMs = options.timeoutMs ?? 600_000;
  const timer = setTimeout(
    () => settle.reject(new Error(`slot ${options.slot}: ${handled} of ${expected} changes after ${timeoutMs} ms`)),
    timeoutMs,
  );
  const sql =
    `START_REPLICATION SLOT ${quoteIdent(options.slot)} LOGICAL 0/0 ` +
    `(proto_version '1', publication_names ${quoteLiteral(quoteIdent(options.publication))})`;
  client.query(sql).then(
    () => settle.reject(new Error(`slot ${options.slot}: replication stream ended after ${handled} changes`)),
    (err: Error) => settle.reject(err),
  );
  try {
    return await result;
  } finally {
    finished = true;
    clearTimeout(timer);
    await Promise.race([client.end().catch(() => undefined), new Promise((r) => setTimeout(r, 2_000))]);
  }
}
