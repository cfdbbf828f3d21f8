// Percentiles of latency samples, the same way for every consumer the bench measures.

/** The p-th percentile (nearest rank) of ascending `sorted`; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const round = (x: number, digits = 0): number => Math.round(x * 10 ** digits) / 10 ** digits;

export interface LatencySummary {
  samples: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

/** Summary of latencies in ms (sorts `ms` in place), rounded to µs. */
export function summariseMs(ms: number[]): LatencySummary {
  ms.sort((x, y) => x - y);
  return {
    samples: ms.length,
    p50: round(percentile(ms, 50), 3),
    p90: round(percentile(ms, 90), 3),
    p99: round(percentile(ms, 99), 3),
    p999: round(percentile(ms, 99.9), 3),
    max: round(ms.at(-1) ?? Number.NaN, 3),
  };
}

/** Wall-clock time in µs since the epoch, with sub-ms precision (Date.now() has whole ms only). */
export function nowUs(): number {
  return (performance.timeOrigin + performance.now()) * 1000;
}
