import { formatLsn, maxLsn, type Lsn } from '../../core/lsn.js';
import type { Logger } from '../../log.js';
import { standbyStatusUpdate } from './protocol.js';

/**
 * The standby status updates of one source: what confirms the applied position to Postgres (the
 * slot's confirmed_flush_lsn). Sent on demand (a keepalive asking for a reply, a stop), on the
 * source's own timer, and promptly after progress, at most once a second.
 */
export class StandbyStatus {
  private lastSentMs = 0;
  private trailing: NodeJS.Timeout | null = null;
  /** The applied position last sent, for /status; null before the first update. */
  confirmed: Lsn | null = null;

  constructor(
    private readonly options: {
      /** Where to send an update now, or null while not streaming. */
      send: () => ((chunk: Buffer) => void) | null;
      /** The received and applied positions to report. */
      positions: () => { received: Lsn; applied: Lsn };
      log: Logger;
    },
  ) {}

  /**
   * Confirms the applied position promptly after progress, at most once a second: each
   * confirmation lets Postgres free WAL, and a crash replays at most a second of work.
   */
  soon(): void {
    const sinceMs = Date.now() - this.lastSentMs;
    if (sinceMs >= 1_000) this.now(false);
    else if (this.trailing === null) {
      this.trailing = setTimeout(() => {
        this.trailing = null;
        this.now(false);
      }, 1_000 - sinceMs);
    }
  }

  now(replyRequestedByServer: boolean): void {
    const send = this.options.send();
    if (send === null) return;
    const { received, applied } = this.options.positions();
    const nowMs = Date.now();
    send(standbyStatusUpdate(maxLsn(received, applied), applied, nowMs));
    this.lastSentMs = nowMs;
    this.confirmed = applied;
    if (replyRequestedByServer) this.options.log.trace({ applied: formatLsn(applied) }, 'keepalive answered');
  }

  /** The last update, sent at once, before the connection closes. */
  final(): void {
    if (this.trailing !== null) clearTimeout(this.trailing);
    this.trailing = null;
    this.now(false);
  }
}
