import pg from 'pg';
import { toError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { libpqConnectionString } from '../../lib/pg/sql.js';

/**
 * Runs a small piece of SQL work on an interval, on a connection of its own that is opened on
 * first use and reopened after a failure. A failure is logged once per outage: the replication
 * connection reports outages too, and a line every few seconds would drown it.
 */
export class PeriodicQuery {
  private timer: NodeJS.Timeout | null = null;
  private client: pg.Client | null = null;
  private busy = false;
  private failing = false;

  constructor(
    private readonly options: {
      url: string;
      intervalMs: number;
      /** What the warning says failed, e.g. "heartbeat". */
      what: string;
      /** Run once right away, not only after the first interval. */
      immediately?: boolean;
      logger: Logger;
      work: (client: pg.Client) => Promise<void>;
    },
  ) {}

  start(): void {
    if (this.timer !== null) return;
    if (this.options.immediately) void this.tick();
    this.timer = setInterval(() => void this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      if (this.client === null) {
        const client = new pg.Client({ connectionString: libpqConnectionString(this.options.url), application_name: 'cdc-invalidator' });
        client.on('error', () => undefined);
        await client.connect();
        this.client = client;
      }
      await this.options.work(this.client);
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.options.logger.warn({ err: toError(err) }, `${this.options.what} failed`);
      this.failing = true;
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
