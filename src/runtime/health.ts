import type { Sink } from '../ports/sink.js';
import type { Source } from '../ports/source.js';
import type { HealthReport } from '../ports/status.js';
import type { GaugeReadings } from './metrics.js';
import type { WorkerStats } from './stats.js';
import type { WorkerState } from './worker.js';

export interface HealthOptions {
  readyMaxLagSeconds: number;
  stuckAfterSeconds: number;
  now?: () => number;
}

interface Observed {
  state(): WorkerState;
  source: Source;
  sink: Sink;
  stats: WorkerStats;
  /** Source-specific extra readings, e.g. a slot's retained WAL. */
  retainedWalBytes?: () => number | null;
  /** The application's read replicas, when invalidations wait for them. */
  replicas?: { lagging(): string[]; status(): unknown[] };
}

/**
 * Answers the operator's questions from what the worker, source and sink report: is the loop
 * alive (liveness), should traffic count on it (readiness), and where does it stand (status).
 */
export class Health implements GaugeReadings, HealthReport {
  private readonly startedAtMs: number;
  private readonly now: () => number;

  constructor(
    private readonly observed: Observed,
    private readonly options: HealthOptions,
  ) {
    this.now = options.now ?? Date.now;
    this.startedAtMs = this.now();
  }

  /**
   * Seconds since the commit of the oldest change received and not yet applied; 0 when caught up.
   * (What the server has not sent yet shows in the lag in bytes instead.)
   */
  lagSeconds(): number {
    const inFlight = this.observed.stats.inFlightOldestCommitTimeMs;
    const oldest = inFlight ?? this.observed.source.status().oldestBufferedCommitTimeMs;
    if (oldest === null) return 0;
    return Math.max(0, (this.now() - oldest) / 1000);
  }

  /** The loop is alive unless it failed, or work is pending and it has not moved for too long. */
  liveness(): { alive: boolean; reason?: string } {
    const state = this.observed.state();
    if (state === 'failed') return { alive: false, reason: 'worker failed' };
    if (state === 'stopped') return { alive: false, reason: 'worker stopped' };
    const stats = this.observed.stats;
    const pending = stats.inFlightOldestCommitTimeMs !== null || this.observed.source.status().buffered > 0;
    const idleSeconds = (this.now() - stats.lastActivityMs) / 1000;
    if (state === 'running' && pending && idleSeconds > this.options.stuckAfterSeconds) {
      return { alive: false, reason: `work pending and no progress for ${Math.round(idleSeconds)} s` };
    }
    return { alive: true };
  }

  /**
   * Ready: running, streaming, connected to Redis, and not too far behind. A standby (another worker
   * streams the slot) is not ready, and says so; its role and since when are in the answer.
   */
  readiness(): { ready: boolean; reasons: string[]; role?: 'active' | 'standby'; roleSince?: string } {
    const reasons: string[] = [];
    const state = this.observed.state();
    const source = this.observed.source.status();
    const role = source.role ?? null;
    if (state !== 'running') reasons.push(`worker is ${state}`);
    if (role?.role === 'standby') reasons.push('standby: another worker streams the slot');
    else if (!source.connected) reasons.push('replication stream not connected');
    if (!this.observed.sink.isConnected()) reasons.push(`${this.observed.sink.kind ?? 'redis'} not connected`);
    const lag = this.lagSeconds();
    if (lag > this.options.readyMaxLagSeconds) {
      reasons.push(`lag ${lag.toFixed(1)} s is over ${this.options.readyMaxLagSeconds} s`);
    }
    reasons.push(...(this.observed.replicas?.lagging() ?? []));
    return { ready: reasons.length === 0, reasons, ...(role === null ? {} : { role: role.role, roleSince: new Date(role.sinceMs).toISOString() }) };
  }

  /** 1 while this worker streams the source, 0 as a standby; null for a source without roles. */
  active(): number | null {
    const role = this.observed.source.status().role ?? null;
    return role === null ? null : role.role === 'active' ? 1 : 0;
  }

  status(): Record<string, unknown> {
    const source = this.observed.source.status();
    const stats = this.observed.stats;
    const role = source.role ?? null;
    return {
      state: this.observed.state(),
      ...(role === null ? {} : { role: role.role, roleSince: new Date(role.sinceMs).toISOString() }),
      ready: this.readiness(),
      uptimeSeconds: Math.round((this.now() - this.startedAtMs) / 1000),
      source: {
        ...source.details,
        connected: source.connected,
        position: { received: source.received, applied: source.applied, confirmed: source.confirmed },
        bufferedChanges: source.buffered,
      },
      sink: { connected: this.observed.sink.isConnected() },
      ...(this.observed.replicas ? { replicas: this.observed.replicas.status() } : {}),
      lag: { seconds: round3(this.lagSeconds()), bytes: source.lagBytes },
      counts: {
        batches: stats.batches,
        changes: stats.changes,
        keysDeleted: stats.keysDeleted,
        keysBumped: stats.keysBumped,
        retries: stats.retries,
        fallbacks: stats.fallbacks,
        deadLetters: stats.deadLetters,
      },
      lastAppliedAt: stats.lastAppliedAtMs === null ? null : new Date(stats.lastAppliedAtMs).toISOString(),
    };
  }

  // GaugeReadings, for the metrics.
  sourceLagBytes(): number | null {
    return this.observed.source.status().lagBytes;
  }
  slotRetainedBytes(): number | null {
    return this.observed.retainedWalBytes?.() ?? null;
  }
  ready(): boolean {
    return this.readiness().ready;
  }
  sourceConnected(): boolean {
    return this.observed.source.status().connected;
  }
  sinkConnected(): boolean {
    return this.observed.sink.isConnected();
  }
  bufferedChanges(): number {
    return this.observed.source.status().buffered;
  }
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}
