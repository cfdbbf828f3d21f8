import type { Change, Evaluation, KeyOperation } from '../core/change.js';
import { emptyEvaluation, evaluate, lookupsFor } from '../core/evaluate.js';
import { NO_LOOKUP_RESULTS, type LookupRequest, type LookupResults } from '../core/lookup.js';
import type { LookupRunner } from '../ports/lookups.js';
import type { RuleSet } from '../core/rules.js';
import { toError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Sink, SinkBatch } from '../ports/sink.js';
import type { Source, SourceBatch } from '../ports/source.js';
import { Backoff, sleep } from '../lib/backoff.js';
import { ReplicaStage, type ReplayWatch } from './replica-stage.js';
import type { WorkerStats } from './stats.js';

export type WorkerState = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface WorkerOptions<P> {
  source: Source<P>;
  sink: Sink;
  rules: RuleSet;
  /** Runs the rules' lookups; needed only when a rule declares one. */
  lookups?: LookupRunner;
  maxChanges: number;
  logger: Logger;
  stats: WorkerStats;
  /** Read replicas: each batch is invalidated again once they replayed it, and acknowledged only then. */
  replicas?: ReplayWatch;
  /** How long a graceful stop waits for the batch in flight. */
  drainTimeoutMs?: number;
  retry?: { initialMs: number; maxMs: number };
}

/**
 * The loop: take what the source has piled up, turn it into key operations, apply them to the
 * sink (retrying until it works), and only then acknowledge the batch to the source. One batch
 * is applied at a time, which is what keeps commit order; the next one is read, made visible and
 * evaluated meanwhile.
 */
export class Worker<P = unknown> {
  private stateValue: WorkerState = 'idle';
  private startPromise: Promise<void> | null = null;
  private stopPromise: Promise<void> | null = null;
  private loopPromise: Promise<void> | null = null;
  /** Aborted on a forced stop: retries in flight give up. */
  private readonly abort = new AbortController();
  /** Aborted on any stop: retries that keep the worker from starting give up. */
  private readonly startAbort = new AbortController();
  private stopRequested = false;
  private readonly fallbackRulesSeen = new Set<string>();
  private failure: Error | null = null;
  /** When the sink began failing, while it does. */
  private failingSinceMs: number | null = null;
  private readonly log: Logger;
  private readonly done: Promise<void>;
  private resolveDone!: () => void;
  private readonly replicaStage: ReplicaStage<P> | null;

  /** The cache's name in log lines (`redis apply failed; retrying`, with `redis: <target>`). */
  get #cache(): 'redis' | 'memcached' {
    return this.options.sink.kind ?? 'redis';
  }

  constructor(private readonly options: WorkerOptions<P>) {
    this.log = options.logger.child({ component: 'worker' });
    this.done = new Promise((resolve) => {
      this.resolveDone = resolve;
    });
    const replicas = options.replicas;
    this.replicaStage =
      replicas === undefined
        ? null
        : new ReplicaStage({
            watch: replicas,
            apply: async (batch) => (await this.applyWithRetry(batch)) !== null,
            acknowledge: (batch) => options.source.acknowledge(batch),
            onError: (err) => {
              this.failure ??= toError(err);
              this.log.error({ err: this.failure }, 'worker failed');
              void this.stop();
            },
          });
  }

  get state(): WorkerState {
    return this.stateValue;
  }

  /** The error that stopped the worker, if one did. */
  get error(): Error | null {
    return this.failure;
  }

  /** Resolves once the worker has stopped, whether asked to or by a fatal error. */
  finished(): Promise<void> {
    return this.done;
  }

  start(): Promise<void> {
    this.startPromise ??= this.doStart();
    return this.startPromise;
  }

  private async doStart(): Promise<void> {
    this.transition('starting');
    try {
      await this.connectSink();
      if (!this.stopRequested) await this.options.replicas?.start();
      if (!this.stopRequested) await this.options.source.start();
    } catch (err) {
      // A stop during start is not a failure: doStop() finishes the shutdown.
      if (this.stopRequested) return;
      this.failure = toError(err);
      this.transition('failed');
      await this.closeAll();
      this.resolveDone();
      throw this.failure;
    }
    if (this.stopRequested) return;
    this.transition('running');
    this.replicaStage?.start();
    this.loopPromise = this.loop();
  }

  private async connectSink(): Promise<void> {
    const backoff = new Backoff(this.options.retry ?? { initialMs: 100, maxMs: 5_000 });
    for (;;) {
      try {
        await this.options.sink.connect();
        return;
      } catch (err) {
        if (this.startAbort.signal.aborted) throw err;
        const delayMs = backoff.next();
        const e = toError(err);
        this.log.warn({ error: e.message, [this.#cache]: this.options.sink.target, attempt: backoff.attempts, delayMs }, `${this.#cache} not reachable; retrying`);
        this.log.debug({ err: e }, `${this.#cache} not reachable: stack`);
        await sleep(delayMs, this.startAbort.signal);
        if (this.startAbort.signal.aborted) throw err;
      }
    }
  }

  private async loop(): Promise<void> {
    const { source, stats } = this.options;
    let upcoming = this.prepare();
    try {
      for (;;) {
        const prepared = await upcoming;
        if (prepared === null || this.stopRequested) break;
        // The next batch is taken, waited for until visible, and evaluated while this one is
        // applied; it is applied only after this one, so order holds.
        upcoming = this.prepare();
        upcoming.catch(() => undefined);
        const { batch, evaluation } = prepared;
        stats.batchTaken(batch, Date.now());
        const stage = this.replicaStage;
        const applySeconds = await this.applyWithRetry({
          operations: evaluation.operations,
          deadLetters: evaluation.deadLetters,
          // With replicas, the position is stored by the second pass: it says "invalidated everywhere".
          appliedPosition: stage === null ? (batch.appliedPosition ?? null) : null,
        });
        if (applySeconds === null) break;
        if (stage === null) await source.acknowledge(batch);
        else await stage.push(batch, evaluation.operations);
        stats.batchApplied(batch, evaluation, applySeconds, Date.now());
        this.logSkips(evaluation);
      }
    } catch (err) {
      this.failure = toError(err);
      this.log.error({ err: this.failure }, 'worker failed');
    }
    if (this.failure !== null) {
      void this.stop();
    }
  }

  /**
   * The next batch and its key operations, or null once the source is stopping. A batch taken
   * here and not applied (the worker stopped first) is not acknowledged: it is sent again.
   */
  private async prepare(): Promise<{ batch: SourceBatch<P>; evaluation: Evaluation } | null> {
    const batch = await this.options.source.next(this.options.maxChanges);
    if (batch === null) return null;
    const lookups = await this.runLookups(batch.changes);
    const evaluation = emptyEvaluation();
    for (const change of batch.changes) evaluate(change, this.options.rules, evaluation, lookups);
    if (batch.deadLetters !== undefined) evaluation.deadLetters.push(...batch.deadLetters);
    return { batch, evaluation };
  }

  /** Runs every distinct lookup the batch needs, once, before its keys are rendered. */
  private async runLookups(changes: readonly Change[]): Promise<LookupResults> {
    const runner = this.options.lookups;
    if (runner === undefined || !this.options.rules.hasLookups) return NO_LOOKUP_RESULTS;
    const requests = new Map<string, LookupRequest>();
    for (const change of changes) lookupsFor(change, this.options.rules, requests);
    if (requests.size === 0) return NO_LOOKUP_RESULTS;
    return runner.run([...requests.values()]);
  }

  /**
   * Operations that belong to no batch (a lost replication slot's recovery actions): applied like
   * a batch, retried until the sink takes them, counted, and given up only by a forced stop, in
   * which case this resolves false.
   */
  async applyRecovery(operations: readonly KeyOperation[]): Promise<boolean> {
    const seconds = await this.applyWithRetry({ operations, deadLetters: [] });
    if (seconds === null) return false;
    this.options.stats.recoveryApplied(operations);
    return true;
  }

  /** Retries the whole batch until the sink applies it; its duration, or null when a forced stop gave up. */
  private async applyWithRetry(batch: SinkBatch): Promise<number | null> {
    const backoff = new Backoff(this.options.retry ?? { initialMs: 100, maxMs: 5_000 });
    const stats = this.options.stats;
    for (;;) {
      const started = performance.now();
      stats.applyAttempt(Date.now());
      try {
        await this.options.sink.apply(batch);
        if (this.failingSinceMs !== null) {
          this.log.info({ [this.#cache]: this.options.sink.target, failedForMs: Date.now() - this.failingSinceMs, attempts: backoff.attempts }, `${this.#cache} applies again`);
          this.failingSinceMs = null;
        }
        return (performance.now() - started) / 1000;
      } catch (err) {
        stats.applyFailed();
        this.failingSinceMs ??= Date.now();
        if (this.abort.signal.aborted) return null;
        const delayMs = backoff.next();
        // One line an operator can read: what failed and where; the stack only at debug level.
        const e = toError(err);
        this.log.warn({ error: e.message, [this.#cache]: this.options.sink.target, attempt: backoff.attempts, delayMs }, `${this.#cache} apply failed; retrying`);
        this.log.debug({ err: e }, `${this.#cache} apply failed: stack`);
        await sleep(delayMs, this.abort.signal);
        if (this.abort.signal.aborted) return null;
      }
    }
  }

  private logSkips(evaluation: Evaluation): void {
    for (const f of evaluation.fallbacks) {
      // A fallback is configured behaviour, often on every update of a table: say so once per
      // rule at warn level (usually a replica identity to widen), then count quietly.
      const fields = { table: `${f.schema}.${f.table}`, op: f.op, reason: f.reason, rule: f.rule, detail: f.detail };
      if (this.fallbackRulesSeen.has(f.rule)) {
        this.log.debug(fields, 'fallback used');
      } else {
        this.fallbackRulesSeen.add(f.rule);
        this.log.warn(fields, 'fallback used (logged once per rule; later uses at debug level)');
      }
    }
    for (const d of evaluation.deadLetters) {
      this.log.error(
        { table: `${d.schema}.${d.table}`, op: d.op, reason: d.reason, position: d.position, detail: d.detail },
        'dead letter',
      );
    }
  }

  /**
   * Ordered shutdown: stop intake, let the batch in flight finish (bounded), acknowledge what was
   * applied, then close source and sink. Safe to call twice; a stop during start waits for it.
   */
  stop(options: { force?: boolean } = {}): Promise<void> {
    if (options.force) this.abort.abort();
    this.stopPromise ??= this.doStop();
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.stopRequested = true;
    this.startAbort.abort();
    this.options.source.stopIntake();
    if (this.startPromise !== null) await this.startPromise.catch(() => undefined);
    if (this.stateValue === 'stopped' || this.stateValue === 'failed') return;
    this.transition('stopping');
    if (this.loopPromise !== null) {
      const drainMs = this.options.drainTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        this.log.warn({ drainMs }, 'batch in flight did not finish in time; stopping without it');
        this.abort.abort();
      }, drainMs);
      await this.loopPromise;
      // Batches waiting for replicas get up to the drain time too; what has not passed by then is
      // not acknowledged, so it is sent again at the next start.
      await this.replicaStage?.stop(drainMs);
      clearTimeout(timer);
    }
    await this.replicaStage?.stop();
    this.abort.abort();
    await this.closeAll();
    this.transition(this.failure === null ? 'stopped' : 'failed');
    this.resolveDone();
  }

  private async closeAll(): Promise<void> {
    for (const [name, step] of [
      ['source', () => this.options.source.close()],
      ['sink', () => this.options.sink.close()],
      ['lookups', async () => this.options.lookups?.close()],
      ['replicas', async () => this.options.replicas?.close()],
    ] as const) {
      try {
        await step();
      } catch (err) {
        this.log.warn({ err: toError(err), step: name }, 'shutdown step failed');
      }
    }
  }

  private transition(next: WorkerState): void {
    this.log.info({ from: this.stateValue, to: next }, 'state');
    this.stateValue = next;
  }
}
