import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the gauges read at scrape time. */
export interface GaugeReadings {
  lagSeconds(): number;
  sourceLagBytes(): number | null;
  slotRetainedBytes(): number | null;
  ready(): boolean;
  sourceConnected(): boolean;
  sinkConnected(): boolean;
  bufferedChanges(): number;
  /** 1 active, 0 standby, null for a source without roles. */
  active(): number | null;
}

const PREFIX = 'cdc_invalidator_';

/**
 * Prometheus metrics on a registry of their own. Labels are low-cardinality by construction:
 * table and operation names, actions, reasons; never a key or a row value.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly changes: Counter<'table' | 'op'>;
  readonly keys: Counter<'action'>;
  readonly batches: Counter;
  readonly retries: Counter;
  readonly deadLetters: Counter<'reason'>;
  readonly fallbacks: Counter<'reason'>;
  readonly applyDuration: Histogram;
  readonly endToEnd: Histogram;
  private readings: GaugeReadings | null = null;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.changes = new Counter({
      name: `${PREFIX}changes_total`,
      help: 'Row changes applied, by table and operation.',
      labelNames: ['table', 'op'],
      registers,
    });
    this.keys = new Counter({
      name: `${PREFIX}keys_total`,
      help: 'Key operations sent to Redis (before de-duplication within a batch), by action.',
      labelNames: ['action'],
      registers,
    });
    this.batches = new Counter({ name: `${PREFIX}batches_total`, help: 'Batches applied.', registers });
    this.retries = new Counter({
      name: `${PREFIX}retries_total`,
      help: 'Failed attempts to apply a batch to Redis (each is retried).',
      registers,
    });
    this.deadLetters = new Counter({
      name: `${PREFIX}dead_letters_total`,
      help: 'Changes that matched a rule but could not be turned into keys and had no fallback.',
      labelNames: ['reason'],
      registers,
    });
    this.fallbacks = new Counter({
      name: `${PREFIX}fallbacks_total`,
      help: "Rules whose keys could not be computed, so their fallback actions ran.",
      labelNames: ['reason'],
      registers,
    });
    this.applyDuration = new Histogram({
      name: `${PREFIX}apply_duration_seconds`,
      help: 'Time to apply one batch to Redis (successful attempts).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.endToEnd = new Histogram({
      name: `${PREFIX}end_to_end_seconds`,
      help: 'From commit (database clock) to applied in Redis (worker clock), per transaction.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers,
    });
    // Labelled counters start at 0 for every known label value, so that increase() in alerts sees
    // the first dead letter or fallback after a restart.
    for (const reason of ['unknown_value', 'truncate', 'lookup_failed', 'malformed_event'] as const) {
      this.deadLetters.inc({ reason }, 0);
      this.fallbacks.inc({ reason }, 0);
    }
    for (const action of ['delete', 'bump', 'tag', 'pattern'] as const) this.keys.inc({ action }, 0);
    const readings = () => this.readings;
    const gauge = (name: string, help: string, read: (r: GaugeReadings) => number | null) =>
      new Gauge({
        name: `${PREFIX}${name}`,
        help,
        registers,
        // Read at scrape time; prom-client calls this with the gauge as `this`.
        collect(this: Gauge) {
          const r = readings();
          const value = r === null ? null : read(r);
          if (value !== null) this.set(value);
        },
      });
    gauge('lag_seconds', 'Now minus the commit time of the oldest change not yet applied; 0 when caught up.', (r) =>
      r.lagSeconds(),
    );
    gauge('source_lag_bytes', 'WAL between the server position and what the slot has confirmed.', (r) => r.sourceLagBytes());
    gauge('slot_retained_wal_bytes', 'WAL the replication slot keeps on the server (from its restart_lsn).', (r) =>
      r.slotRetainedBytes(),
    );
    gauge('ready', '1 when /readyz answers 200.', (r) => (r.ready() ? 1 : 0));
    gauge('source_connected', '1 while the replication stream is connected.', (r) => (r.sourceConnected() ? 1 : 0));
    gauge('sink_connected', '1 while Redis is connected.', (r) => (r.sinkConnected() ? 1 : 0));
    gauge('buffered_changes', 'Changes received and not yet handed to the worker loop.', (r) => r.bufferedChanges());
    gauge('active', '1 while this worker streams the slot, 0 while it waits as a standby (Postgres source).', (r) => r.active());
  }

  /** Gauges read these at scrape time. */
  observe(readings: GaugeReadings): void {
    this.readings = readings;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
