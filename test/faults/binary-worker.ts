// Helpers for fault scenarios that run the built binary (`node dist/cli.js run`): memory of the
// process from /proc, its HTTP port from the log, its metrics, and key counting in Redis.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { waitFor } from '../harness/wait-for.js';
import type { WorkerProcess } from '../e2e/worker-process.js';

export interface MemoryReading {
  /** Resident set size now, in bytes. */
  rss: number;
  /** Peak resident set size of the process so far (VmHWM), in bytes. */
  hwm: number;
}

/** VmRSS and VmHWM of a live process, or null once it is gone. */
export function readMemory(pid: number): MemoryReading | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return null;
  }
  const kb = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    return m === null ? 0 : Number(m[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** Samples a process's memory every `intervalMs` until stopped; keeps the highest figures seen. */
export class MemorySampler {
  peakRss = 0;
  peakHwm = 0;
  samples = 0;
  /** Every reading: milliseconds since the sampler started, and VmRSS in bytes. */
  readonly timeline: Array<{ ms: number; rss: number }> = [];
  private readonly startedAt = Date.now();
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly pid: number, intervalMs = 50) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.sample();
  }

  sample(): void {
    const m = readMemory(this.pid);
    if (m === null) return;
    this.samples++;
    this.timeline.push({ ms: Date.now() - this.startedAt, rss: m.rss });
    this.peakRss = Math.max(this.peakRss, m.rss);
    this.peakHwm = Math.max(this.peakHwm, m.hwm);
  }

  elapsedMs(): number {
    return Date.now() - this.startedAt;
  }

  /** Highest VmRSS among the readings taken between `fromMs` and `toMs` after the start. */
  peakBetween(fromMs: number, toMs: number): number {
    let peak = 0;
    for (const r of this.timeline) if (r.ms >= fromMs && r.ms <= toMs) peak = Math.max(peak, r.rss);
    return peak;
  }

  /** Peak VmRSS in each of `parts` equal slices of [fromMs, toMs]. */
  profile(fromMs: number, toMs: number, parts = 10): number[] {
    const step = (toMs - fromMs) / parts;
    return Array.from({ length: parts }, (_, i) => this.peakBetween(fromMs + i * step, fromMs + (i + 1) * step));
  }

  /** Takes a last sample and stops; returns the peak (VmHWM covers what sampling missed). */
  stop(): number {
    this.sample();
    clearInterval(this.timer);
    return Math.max(this.peakRss, this.peakHwm);
  }
}

export const mib = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** The port the worker's HTTP server listens on, from its 'http listening' log line (http.port 0). */
export async function httpPortOf(worker: WorkerProcess, timeoutMs = 30_000): Promise<number> {
  return await waitFor(
    () => {
      for (const line of worker.output().split('\n')) {
        if (!line.includes('"http listening"')) continue;
        const parsed = JSON.parse(line) as { port?: number };
        if (typeof parsed.port === 'number') return parsed.port;
      }
      return null;
    },
    { timeoutMs, message: "the worker's 'http listening' log line" },
  );
}

export async function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Sum of a metric's samples whose labels include all of `labels` (0 when absent). */
export function metricValue(metricsText: string, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  for (const line of metricsText.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const labelText = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) total += Number(m[3]);
  }
  return total;
}

/** True while the child has neither exited nor been killed. */
export function alive(worker: WorkerProcess): boolean {
  return worker.child.exitCode === null && worker.child.signalCode === null;
}

/** Sets every key to a value, in pipelines of `chunk`. Keys are full names (prefix included). */
export async function seedKeys(redis: Redis, keys: readonly string[], chunk = 10_000): Promise<void> {
  for (let i = 0; i < keys.length; i += chunk) {
    const pipeline = redis.pipeline();
    for (const key of keys.slice(i, i + chunk)) pipeline.set(key, 'cached');
    await pipeline.exec();
  }
}

/** How many of the keys exist. Keys are full names (prefix included). */
export async function countExisting(redis: Redis, keys: readonly string[], chunk = 10_000): Promise<number> {
  let n = 0;
  for (let i = 0; i < keys.length; i += chunk) n += await redis.exists(...keys.slice(i, i + chunk));
  return n;
}

/** The slot's confirmed_flush_lsn as a number (0 when unset). */
export async function confirmedLsn(
  sql: (text: string, params?: unknown[]) => Promise<Array<Record<string, unknown>>>,
  slot: string,
): Promise<bigint> {
  const [row] = await sql(`SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`, [slot]);
  const c = row?.['c'];
  return typeof c === 'string' ? BigInt(c) : 0n;
}
