/**
 * The port between the worker's runtime and what reports on it (the HTTP endpoints): health and
 * metrics, read on request.
 */
export interface HealthReport {
  liveness(): { alive: boolean; reason?: string };
  readiness(): { ready: boolean; reasons: string[] };
  status(): Record<string, unknown>;
}

export interface MetricsExposition {
  /** The Content-Type of `text()`'s output. */
  readonly contentType: string;
  text(): Promise<string>;
}
