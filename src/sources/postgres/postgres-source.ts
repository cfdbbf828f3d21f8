import pg from 'pg';
import type { Change } from '../../core/change.js';
import { rulesMissingColumns } from '../../core/table-requirements.js';
import { formatLsn, maxLsn, ZERO_LSN, type Lsn } from '../../core/lsn.js';
import { InvalidatorError, SlotInUseError, SlotLostError, SourceUnavailableError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { Backoff, sleep } from '../../lib/backoff.js';
import { BatchQueue, HIGH_WATER_BYTES, MAX_BATCH_BYTES } from '../batch-queue.js';
import type { Source, SourceBatch, SourceStatus } from '../../ports/source.js';
import { PgoutputDecoder } from './decoder.js';
import { heartbeat } from './heartbeat.js';
import { SlotMonitor } from './slot-monitor.js';
import { TransactionIds, VisibilityGate } from './visibility.js';
import type { PgPosition, PostgresSourceOptions } from './source-options.js';
import { parseCopyData } from './protocol.js';
import { StandbyStatus } from './standby-status.js';
import { prepareWithRetry, recreateSlot, type MappedTable } from './setup.js';
import { classify, connectionOf, endClient } from '../../lib/pg/connection.js';
import { libpqConnectionString, quoteIdent, quoteLiteral } from '../../lib/pg/sql.js';

export type { PgPosition, PostgresSourceOptions } from './source-options.js';

/**
 * Streams a pgoutput logical replication slot.
 *
 * The one invariant: the position confirmed to Postgres (the slot's confirmed_flush_lsn) is the
 * end of a transaction whose keys Redis has applied, or a keepalive position reached while
 * nothing was pending. It is sent on its own timer and in answer to keepalives, also while the
 * worker is blocked on Redis, and every reconnect restarts from it. Duplicates after a crash are
 * possible; gaps are not.
 */
export class PostgresSource implements Source<PgPosition | null> {
  private readonly queue: BatchQueue<PgPosition>;
  private readonly log: Logger;
  private readonly stopController = new AbortController();
  /** Aborted by stopIntake(): a start still waiting for the database gives up. */
  private readonly intakeController = new AbortController();
  private readonly heartbeat: { start(): void; stop(): void };
  private readonly monitor: SlotMonitor;
  private mappedTables = new Map<number, MappedTable>();
  /** Tables this worker set to REPLICA IDENTITY FULL at start, for /status. */
  private identitySetFull: string[] = [];
  private statusIntervalMs = 10_000;
  private decoder = new PgoutputDecoder();
  private client: pg.Client | null = null;
  private streaming = false;
  /** Streaming the slot, or waiting for the worker that does; null until either happened. */
  private role: { role: 'active' | 'standby'; sinceMs: number } | null = null;
  private paused = false;
  private received: Lsn = ZERO_LSN;
  private applied: Lsn = ZERO_LSN;
  /** Confirms the applied position to the server. */
  private readonly standby: StandbyStatus;
  /** Batches handed to the worker and not yet acknowledged. */
  private outstanding = 0;
  private loop: Promise<void> | null = null;
  private readonly gate: VisibilityGate;
  private readonly xids = new TransactionIds();
  /** Size of the XLogData message being decoded: each carries one pgoutput message. */
  private payloadBytes = 0;
  private readonly highWaterBytes: number;

  constructor(private readonly options: PostgresSourceOptions) {
    this.log = options.logger.child({ component: 'postgres-source', slot: options.slot });
    this.standby = new StandbyStatus({
      send: () => {
        if (!this.streaming || this.client === null) return null;
        const connection = connectionOf(this.client);
        return (chunk) => connection.sendCopyFromChunk(chunk);
      },
      positions: () => ({ received: this.received, applied: this.applied }),
      log: this.log,
    });
    this.queue = new BatchQueue<PgPosition>({ maxWaitMs: options.maxWaitMs });
    this.highWaterBytes = options.highWaterBytes ?? HIGH_WATER_BYTES;
    this.heartbeat = heartbeat(options.url, options.heartbeatSeconds, this.log);
    this.monitor = new SlotMonitor(options.url, options.slot, options.slotStatsIntervalMs ?? 10_000, this.log);
    this.gate = new VisibilityGate({ url: options.url, mode: options.visibility ?? 'auto', logger: this.log, signal: this.intakeController.signal });
  }

  async start(): Promise<void> {
    await this.prepare();
    this.heartbeat.start();
    this.monitor.start();
    this.loop = this.streamLoop();
  }

  /** Setup runs once; a database that is down is waited for, a misconfigured one is fatal. */
  private async prepare(): Promise<void> {
    const prepared = await prepareWithRetry({
      url: this.options.url,
      setup: this.options,
      log: this.log,
      signal: this.intakeController.signal,
      ...(this.options.recoverLostChanges !== undefined
        ? { onSlotLost: (client: pg.Client, lost: SlotLostError) => this.recoverLostSlot(client, lost) }
        : {}),
    });
    this.mappedTables = prepared.mappedTables;
    if (prepared.identitySetFull.length > 0) this.identitySetFull = prepared.identitySetFull;
    this.statusIntervalMs =
      this.options.statusIntervalMs ??
      (prepared.walSenderTimeoutMs > 0 ? Math.min(10_000, Math.max(200, prepared.walSenderTimeoutMs / 3)) : 10_000);
  }

  /**
   * A new slot first, then the recovery actions: everything that changed before the new slot's
   * consistent point is covered by the actions, everything after it is streamed.
   */
  private async recoverLostSlot(client: pg.Client, lost: SlotLostError): Promise<void> {
    this.log.error({ err: lost }, 'replication slot lost changes; recovering as configured (source.slotLost: recover)');
    await recreateSlot(client, this.options.slot, this.log);
    const lsn = await client.query<{ lsn: string }>(`SELECT (pg_catalog.pg_current_wal_lsn() - '0/0')::text AS lsn`);
    this.applied = ZERO_LSN;
    this.received = ZERO_LSN;
    await this.options.recoverLostChanges!(BigInt(lsn.rows[0]!.lsn));
    this.log.warn('recovery actions applied; streaming from the new slot');
  }

  private async streamLoop(): Promise<void> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
    while (!this.stopController.signal.aborted) {
      try {
        await this.streamOnce(() => backoff.reset());
      } catch (err) {
        const e = classify(err);
        if (this.stopController.signal.aborted) break;
        if (e instanceof SlotLostError && this.options.recoverLostChanges !== undefined) {
          // The slot was invalidated while streaming (the worker fell behind too far): the
          // buffered changes came from the lost slot and are replaced by the recovery.
          this.queue.clear();
          try {
            await this.prepare();
          } catch (setupErr) {
            this.queue.close(classify(setupErr));
            return;
          }
          continue;
        }
        if (!e.retryable) {
          this.log.error({ err: e }, 'replication failed');
          this.queue.close(e);
          return;
        }
        const delayMs = backoff.next();
        if (e instanceof SlotInUseError) {
          this.setRole('standby');
          this.log.info({ attempt: backoff.attempts, delayMs }, 'replication slot in use by another worker; waiting');
        } else {
          this.log.warn({ err: e, attempt: backoff.attempts, delayMs }, 'replication connection lost; reconnecting');
        }
        await sleep(delayMs, this.stopController.signal);
      }
    }
  }

  /** One replication connection, from connect to loss. Resolves only when stopped. */
  private async streamOnce(onStarted: () => void): Promise<void> {
    const client = new pg.Client({ connectionString: libpqConnectionString(this.options.url), replication: 'database' } as pg.ClientConfig);
    const lost = new Promise<never>((_, reject) => {
      client.on('error', (err) => reject(new SourceUnavailableError(`replication connection error: ${err.message}`, err)));
      client.on('end', () => reject(new SourceUnavailableError('replication connection closed')));
    });
    lost.catch(() => undefined);
    // A stop can come at any point of the connect-and-start sequence; it must end this client.
    const onStop = () => void endClient(client);
    this.stopController.signal.addEventListener('abort', onStop, { once: true });
    try {
      await Promise.race([client.connect(), lost]);
      if (this.stopController.signal.aborted) return;
      await this.stream(client, lost, onStarted);
    } finally {
      this.stopController.signal.removeEventListener('abort', onStop);
      await endClient(client);
    }
  }

  private async stream(client: pg.Client, lost: Promise<never>, onStarted: () => void): Promise<void> {

    // Whatever was buffered but not handed over will be sent again from the applied position.
    this.queue.clear();
    this.xids.clear();
    this.decoder = new PgoutputDecoder(this.mappedTables);
    this.paused = false;
    this.client = client;
    const connection = connectionOf(client);
    connection.on('copyData', ({ chunk }: { chunk: Buffer }) => this.onCopyData(chunk));
    connection.once('replicationStart', () => {
      this.streaming = true;
      this.setRole('active');
      onStarted();
      // 0/0 asks the server to start where the slot stands (its confirmed_flush_lsn).
      this.log.info({ from: this.applied === ZERO_LSN ? "the slot's confirmed position" : formatLsn(this.applied) }, 'replication started');
    });
    const timer = setInterval(() => this.standby.now(false), this.statusIntervalMs);
    try {
      // From the applied position, never from what was received: pg-logical-replication would
      // resume from its last received LSN, skipping what was received but not applied.
      const sql =
        `START_REPLICATION SLOT ${quoteIdent(this.options.slot)} LOGICAL ${formatLsn(this.applied)} ` +
        `(proto_version '1', publication_names ${quoteLiteral(quoteIdent(this.options.publication))})`;
      await Promise.race([client.query(sql), lost]);
      if (!this.stopController.signal.aborted) throw new SourceUnavailableError('replication stream ended');
    } finally {
      clearInterval(timer);
      this.streaming = false;
      this.client = null;
      connection.removeAllListeners('copyData');
    }
  }

  private onCopyData(chunk: Buffer): void {
    const msg = parseCopyData(chunk);
    if (msg === null) return;
    if (msg.kind === 'xlogdata') {
      this.received = maxLsn(this.received, msg.walStart);
      this.payloadBytes = msg.payload.length;
      try {
        this.decoder.decode(msg.payload, this.decoded);
      } catch (err) {
        this.fail(classify(err));
      }
      if (!this.paused && (this.queue.size >= this.options.highWaterChanges || this.queue.bytes >= this.highWaterBytes)) this.pause();
      return;
    }
    // Nothing pending anywhere: every transaction that committed before the server's position was
    // sent and applied (or touched no mapped table), so the slot may advance to it. This is what
    // keeps an idle slot from holding WAL while other databases write.
    // It is confirmed at once (a server shutting down waits for that reply), and also goes through
    // the worker like an empty transaction, so that the applied position the worker stores for
    // read-your-writes advances too.
    if (this.outstanding === 0 && this.queue.isEmpty && !this.decoder.inTransaction && msg.walEnd > this.applied) {
      this.received = maxLsn(this.received, msg.walEnd);
      this.applied = msg.walEnd;
      this.queue.pushPosition({ endLsn: msg.walEnd, keepalive: true }, Date.now());
      if (!msg.replyRequested) this.standby.soon();
    }
    if (msg.replyRequested) this.standby.now(true);
  }

  private readonly decoded = {
    begin: (xid: number, position: string) => this.xids.begin(xid, position),
    change: (change: Change, commitTimeMs: number) => {
      this.xids.change();
      this.queue.pushChange(change, commitTimeMs, this.payloadBytes);
    },
    commit: (endLsn: Lsn, commitTimeMs: number) => {
      this.xids.commit();
      this.queue.pushPosition({ endLsn }, commitTimeMs);
    },
    renamed: (mappedName: string, streamName: string) =>
      this.log.warn(
        { table: mappedName, streamedAs: streamName },
        'a mapped table streams under another name (renamed); its rules still apply, by table identity. ' +
          'Update the "table" of its rules before the next restart, which looks tables up by name',
      ),
    described: (schema: string, table: string, columns: readonly string[]) => this.checkColumns(schema, table, columns),
  };

  /**
   * A schema change while streaming can drop or rename a column the rules name. Its changes then
   * take the rule's fallback (or become dead letters), which is counted; this says why, once per
   * description. It is not fatal: changes written before the schema change still carry the old
   * columns, and must be processed with the rules that name them.
   */
  private checkColumns(schema: string, table: string, columns: readonly string[]): void {
    for (const { rule, missing } of rulesMissingColumns(this.options.rules.bySchema.get(schema)?.get(table) ?? [], columns)) {
      this.log.error(
        { rule: rule.id, table: `${schema}.${table}`, missing, columns },
        'a mapped table no longer has columns its rule names (changed while streaming): their changes run the ' +
          "rule's fallback or become dead letters until the mapping is corrected",
      );
    }
  }

  private setRole(role: 'active' | 'standby'): void {
    if (this.role?.role === role) return;
    this.role = { role, sinceMs: Date.now() };
    this.log.info({ role }, role === 'active' ? 'active: streaming the slot' : 'standby: another worker streams the slot');
  }

  private pause(): void {
    this.paused = true;
    if (this.client !== null) connectionOf(this.client).stream.pause();
  }

  private resumeIfDrained(): void {
    if (this.paused && this.queue.size <= this.options.highWaterChanges / 2 && this.queue.bytes <= this.highWaterBytes / 2) {
      this.paused = false;
      if (this.client !== null) connectionOf(this.client).stream.resume();
    }
  }

  async next(maxChanges: number): Promise<SourceBatch<PgPosition | null> | null> {
    const taken = await this.queue.take(maxChanges, this.options.maxBatchBytes ?? MAX_BATCH_BYTES);
    this.resumeIfDrained();
    if (taken === null) return null;
    this.outstanding++;
    if (!(await this.gate.waitVisible(this.xids.take(taken.changes)))) {
      // Stopping before the batch became visible: it is not handed over, nor acknowledged, so it
      // is streamed again at the next start.
      this.outstanding--;
      return null;
    }
    const last = taken.position;
    return {
      changes: taken.changes,
      oldestCommitTimeMs: taken.oldestCommitTimeMs,
      // Keepalive positions are no commits: they have no commit time to measure from.
      commitTimesMs: taken.positions.some((p) => p.keepalive) ? taken.commitTimesMs.filter((_, i) => !taken.positions[i]!.keepalive) : taken.commitTimesMs,
      position: last,
      appliedPosition: last === null ? null : formatLsn(last.endLsn),
    };
  }

  async acknowledge(batch: SourceBatch<PgPosition | null>): Promise<void> {
    this.outstanding = Math.max(0, this.outstanding - 1);
    const position = batch.position;
    if (position === null) return;
    this.applied = maxLsn(this.applied, position.endLsn);
    this.standby.soon();
  }

  private fail(err: InvalidatorError): void {
    this.log.error({ err }, 'replication stream cannot be decoded');
    this.queue.close(err);
    this.stopController.abort();
    const client = this.client;
    if (client !== null) void endClient(client);
  }

  stopIntake(): void {
    this.intakeController.abort();
    this.queue.close();
  }

  async close(): Promise<void> {
    this.queue.close();
    if (this.stopController.signal.aborted && this.loop === null) return;
    this.standby.final();
    this.stopController.abort();
    this.heartbeat.stop();
    this.monitor.stop();
    await this.gate.close();
    await this.loop;
    this.loop = null;
  }

  /** WAL the slot keeps on the server, in bytes, as last read; null before the first reading. */
  retainedWalBytes(): number | null {
    return this.monitor.stats?.retainedBytes ?? null;
  }

  status(): SourceStatus {
    return {
      connected: this.streaming,
      received: this.received === ZERO_LSN ? null : formatLsn(this.received),
      applied: this.applied === ZERO_LSN ? null : formatLsn(this.applied),
      confirmed: this.standby.confirmed === null ? null : formatLsn(this.standby.confirmed),
      buffered: this.queue.size,
      oldestBufferedCommitTimeMs: this.queue.oldestCommitTimeMs(),
      lagBytes: this.monitor.stats?.lagBytes ?? null,
      role: this.role,
      details: {
        kind: 'postgres',
        slot: this.options.slot,
        publication: this.options.publication,
        ...this.monitor.details(),
        replicaIdentity: { mode: this.options.replicaIdentity, setFullAtStart: this.identitySetFull },
        visibility: {
          mode: this.options.visibility ?? 'auto',
          active: this.gate.active,
          holdingMs: this.gate.holdingMs === null ? null : Math.round(this.gate.holdingMs),
          batchesWaited: this.gate.waits,
          waitedMs: Math.round(this.gate.waitedMs),
        },
      },
    };
  }
}
