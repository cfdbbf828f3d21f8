import type { Logger } from '../../log.js';
import { PeriodicQuery } from './periodic-query.js';

/**
 * Writes a tiny logical message every few seconds. On an idle database no WAL of its own would
 * flow, and the walsender would have nothing new to report; the message gives it a position to
 * send in its next keepalive, which the source confirms when nothing is pending.
 */
export function heartbeat(url: string, intervalSeconds: number, logger: Logger): { start(): void; stop(): void } {
  if (intervalSeconds <= 0) return { start: () => undefined, stop: () => undefined };
  return new PeriodicQuery({
    url,
    intervalMs: intervalSeconds * 1000,
    what: 'heartbeat',
    logger,
    work: async (client) => {
      await client.query("SELECT pg_catalog.pg_logical_emit_message(false, 'cdc-invalidator', 'heartbeat')");
    },
  });
}
