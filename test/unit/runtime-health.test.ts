import { describe, expect, it } from 'vitest';
import { Health } from '../../src/runtime/health.js';
import { Metrics } from '../../src/runtime/metrics.js';
import { WorkerStats } from '../../src/runtime/stats.js';
import type { WorkerState } from '../../src/runtime/worker.js';
import type { Sink } from '../../src/ports/sink.js';
import type { Source, SourceStatus } from '../../src/ports/source.js';

function setup(o: { state?: WorkerState; connected?: boolean; sink?: boolean; buffered?: number; oldestBuffered?: number | null } = {}) {
  let nowMs = 100_000;
  const status: SourceStatus = {
    connected: o.connected ?? true,
    received: null,
    applied: null,
    confirmed: null,
    buffered: o.buffered ?? 0,
    oldestBufferedCommitTimeMs: o.oldestBuffered ?? null,
    lagBytes: 42,
    details: { kind: 'test' },
  };
  const source = { status: () => status } as unknown as Source;
  const sink = { isConnected: () => o.sink ?? true } as unknown as Sink;
  const stats = new WorkerStats(new Metrics());
  stats.lastActivityMs = nowMs;
  let state: WorkerState = o.state ?? 'running';
  const health = new Health({ state: () => state, source, sink, stats }, { readyMaxLagSeconds: 10, stuckAfterSeconds: 60, now: () => nowMs });
  return {
    health,
    stats,
    status,
    advance: (ms: number) => (nowMs += ms),
    setState: (s: WorkerState) => (state = s),
    now: () => nowMs,
  };
}

describe('Health', () => {
  it('is ready when running, connected and caught up', () => {
    const { health } = setup();
    expect(health.readiness()).toEqual({ ready: true, reasons: [] });
    expect(health.lagSeconds()).toBe(0);
    expect(health.liveness()).toEqual({ alive: true });
  });

  it.each([
    [{ state: 'starting' as const }, 'worker is starting'],
    [{ connected: false }, 'replication stream not connected'],
    [{ sink: false }, 'redis not connected'],
  ])('is not ready when %o', (o, reason) => {
    expect(setup(o).health.readiness().reasons).toContain(reason);
  });

  it('says whether this worker streams the slot or stands by, and since when', async () => {
    const t = setup();
    expect(t.health.active()).toBeNull();
    t.status.role = { role: 'active', sinceMs: 90_000 };
    expect(t.health.readiness()).toEqual({ ready: true, reasons: [], role: 'active', roleSince: new Date(90_000).toISOString() });
    expect(t.health.status()).toMatchObject({ role: 'active', roleSince: new Date(90_000).toISOString() });
    expect(t.health.active()).toBe(1);
    t.status.connected = false;
    t.status.role = { role: 'standby', sinceMs: 95_000 };
    expect(t.health.readiness()).toEqual({ ready: false, reasons: ['standby: another worker streams the slot'], role: 'standby', roleSince: new Date(95_000).toISOString() });
    expect(t.health.active()).toBe(0);
    const metrics = new Metrics();
    metrics.observe(t.health);
    expect(await metrics.text()).toMatch(/^cdc_invalidator_active 0$/m);
  });

  it('measures lag from the oldest unapplied change: the batch in flight first, else the buffer', () => {
    const t = setup({ buffered: 3, oldestBuffered: 100_000 - 5_000 });
    expect(t.health.lagSeconds()).toBe(5);
    t.stats.inFlightOldestCommitTimeMs = 100_000 - 20_000;
    expect(t.health.lagSeconds()).toBe(20);
    expect(t.health.readiness().reasons).toEqual(['lag 20.0 s is over 10 s']);
  });

  it('reports a loop stuck with work pending as not alive, but not an idle one', () => {
    const idle = setup();
    idle.advance(3_600_000);
    expect(idle.health.liveness().alive).toBe(true);
    const stuck = setup({ buffered: 1, oldestBuffered: 99_000 });
    stuck.advance(61_000);
    expect(stuck.health.liveness()).toEqual({ alive: false, reason: 'work pending and no progress for 61 s' });
    stuck.stats.applyAttempt(stuck.now());
    expect(stuck.health.liveness().alive).toBe(true);
  });

  it('is not alive once failed or stopped', () => {
    const t = setup();
    t.setState('failed');
    expect(t.health.liveness()).toEqual({ alive: false, reason: 'worker failed' });
    t.setState('stopped');
    expect(t.health.liveness().alive).toBe(false);
  });

  it('status carries positions, lag and counts', () => {
    const t = setup();
    const status = t.health.status();
    expect(status).toMatchObject({ state: 'running', source: { kind: 'test', connected: true }, lag: { seconds: 0, bytes: 42 }, counts: { changes: 0 } });
  });
});
