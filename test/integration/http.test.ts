import { afterEach, describe, expect, it } from 'vitest';
import { servicesMissing, sharedRedis } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from './scenario.js';

let scenario: Scenario | undefined;
afterEach(async () => {
  await scenario?.cleanup();
  scenario = undefined;
});

async function get(base: string, path: string): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(base + path);
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

/** Metric families in Prometheus text format: name to type. */
function families(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

function sample(text: string, name: string, labels = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}${labels} `) || (labels === '' && line.startsWith(`${name}{`) === false && line.startsWith(`${name} `))) {
      return Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return undefined;
}

describe.skipIf(servicesMissing('postgres', 'redis'))('http endpoints', () => {
  it('report health, readiness, metrics and status; and a Redis outage, then recovery', { timeout: 90_000 }, async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL); ALTER TABLE public.users REPLICA IDENTITY FULL;`,
      rules: `
  - table: users
    invalidate: ["user:{id}"]
    bump: ["users:version"]
  - table: users
    on: [update]
    invalidate: ["user:old-email:{email}"]
`,
      config: 'http:\n  port: 0\n  readyMaxLagSeconds: 2\n  slotStatsIntervalSeconds: 0.2\n',
    });
    const s = scenario;
    const assembly = await s.startWorker();
    // Narrowed after start, so that the old email is unknown from here on: a dead letter.
    await s.sql(`ALTER TABLE users REPLICA IDENTITY DEFAULT`);
    const { port } = await assembly.http.start();
    const base = `http://127.0.0.1:${port}`;

    await waitFor(async () => (await get(base, '/readyz')).status === 200, { timeoutMs: 10_000, message: 'never ready' });
    expect(JSON.parse((await get(base, '/healthz')).body)).toEqual({ status: 'ok' });
    await s.sql(`INSERT INTO users VALUES (1, 'a@x.io'); UPDATE users SET email = 'b@x.io' WHERE id = 1`);
    await s.barrier();

    const metrics = await get(base, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.type).toContain('text/plain');
    const types = families(metrics.body);
    const expected: Record<string, string> = {
      cdc_invalidator_changes_total: 'counter',
      cdc_invalidator_keys_total: 'counter',
      cdc_invalidator_batches_total: 'counter',
      cdc_invalidator_retries_total: 'counter',
      cdc_invalidator_dead_letters_total: 'counter',
      cdc_invalidator_fallbacks_total: 'counter',
      cdc_invalidator_lag_seconds: 'gauge',
      cdc_invalidator_source_lag_bytes: 'gauge',
      cdc_invalidator_slot_retained_wal_bytes: 'gauge',
      cdc_invalidator_apply_duration_seconds: 'histogram',
      cdc_invalidator_end_to_end_seconds: 'histogram',
      cdc_invalidator_ready: 'gauge',
      cdc_invalidator_source_connected: 'gauge',
      cdc_invalidator_sink_connected: 'gauge',
      cdc_invalidator_buffered_changes: 'gauge',
      cdc_invalidator_process_resident_memory_bytes: 'gauge',
    };
    for (const [name, type] of Object.entries(expected)) expect(types.get(name), name).toBe(type);
    for (const name of types.keys()) expect(name.startsWith('cdc_invalidator_'), name).toBe(true);
    expect(sample(metrics.body, 'cdc_invalidator_changes_total', '{table="public.users",op="insert"}')).toBe(1);
    expect(sample(metrics.body, 'cdc_invalidator_changes_total', '{table="public.users",op="update"}')).toBe(1);
    expect(sample(metrics.body, 'cdc_invalidator_dead_letters_total', '{reason="unknown_value"}')).toBe(1);
    expect(sample(metrics.body, 'cdc_invalidator_lag_seconds')).toBe(0);
    expect(sample(metrics.body, 'cdc_invalidator_ready')).toBe(1);
    // No label carries a key or a row value.
    expect(metrics.body).not.toMatch(/a@x\.io|b@x\.io|user:1/);

    const status = JSON.parse((await get(base, '/status')).body);
    expect(status).toMatchObject({
      state: 'running',
      ready: { ready: true, reasons: [] },
      source: { kind: 'postgres', slot: s.slot, connected: true },
      sink: { connected: true },
      lag: { seconds: 0 },
      counts: { deadLetters: 1 },
    });
    expect(status.source.position.applied).toMatch(/^[0-9A-F]+\/[0-9A-F]+$/);
    await waitFor(async () => JSON.parse((await get(base, '/status')).body).lag.bytes !== null, { timeoutMs: 5_000, message: 'no lag bytes' });
    expect(JSON.stringify(status)).not.toContain('postgres://');

    // Redis goes away: not ready, retries counted, lag grows; the loop itself stays alive.
    const redis = await sharedRedis();
    await redis.kill();
    await s.sql(`INSERT INTO users VALUES (2, 'c@x.io')`);
    await waitFor(async () => (await get(base, '/readyz')).status === 503, { timeoutMs: 10_000, message: 'still ready without Redis' });
    await waitFor(
      async () => {
        const r = JSON.parse((await get(base, '/readyz')).body);
        return r.reasons.some((x: string) => x.startsWith('lag ')) && r.reasons.includes('redis not connected');
      },
      { timeoutMs: 15_000, message: 'readyz did not report lag and redis' },
    );
    const down = await get(base, '/metrics');
    expect(sample(down.body, 'cdc_invalidator_retries_total')).toBeGreaterThan(0);
    expect(sample(down.body, 'cdc_invalidator_lag_seconds')).toBeGreaterThan(2);
    expect(sample(down.body, 'cdc_invalidator_sink_connected')).toBe(0);
    expect((await get(base, '/healthz')).status).toBe(200);

    await redis.restart();
    await waitFor(async () => (await get(base, '/readyz')).status === 200, { timeoutMs: 30_000, message: 'not ready after recovery' });
    const after = await get(base, '/metrics');
    expect(sample(after.body, 'cdc_invalidator_lag_seconds')).toBe(0);
    expect(sample(after.body, 'cdc_invalidator_changes_total', '{table="public.users",op="insert"}')).toBe(2);
    expect((await get(base, '/nope')).status).toBe(404);
    expect((await fetch(base + '/status', { method: 'POST' })).status).toBe(405);
  });
});
