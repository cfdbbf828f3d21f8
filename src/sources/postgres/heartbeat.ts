import pg from 'pg';
import { toError } from '../../errors.js';
import type { Logger } from '../../log.js';

/**
 * Writes a tiny logical message every few seconds. On an idle database no WAL of its own would
 * flow, and the walsender would have nothing new to report; the message gives it a position to
 * send in its next keepalive, which the source confirms when nothing is pending.
 */
export class Heartbeat {
  private timer: NodeJS.Timeout | null = null;
  private client: pg.Client | null = null;
  private busy = false;
  private failures = 0;

  constructor(
    private readonly url: string,
    private readonly intervalSeconds: number,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.intervalSeconds <= 0 || this.timer !== null) return;
    this.timer = setInterval(() => void this.beat(), this.intervalSeconds * 1000);
    this.timer.unref();
  }

  private async beat(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.client === null) {
        const client = new pg.Client({ connectionString: this.url });
        client.on('error', () => undefined);
        await client.connect();
        this.client = client;
      }
      await this.client.query("SELECT pg_catalog.pg_logical_emit_message(false, 'cdc-invalidator', 'heartbeat')");
      this.failures = 0;
    } catch (err) {
      this.failures++;
      // One line per outage, then quiet: the replication connection reports the outage too.
      if (this.failures === 1) this.log.warn({ err: toError(err) }, 'heartbeat failed');
      const client = this.client;
      this.client = null;
      await client?.end().catch(() => undefined);
    } finally {
      this.busy = false;
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    const client = this.client;
    this.client = null;
    void client?.end().catch(() => undefined);
  }
}
