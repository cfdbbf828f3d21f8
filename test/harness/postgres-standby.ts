// A physical standby of a harness PostgresServer: a base backup (pg_basebackup -R, run as the server's OS
// user) on its own free port and temp dir, streaming from the primary through a physical slot under its
// own application_name. It can be the primary's synchronous standby, replay with recovery_min_apply_delay
// (a read replica that lags), and be frozen with SIGSTOP (a hung host): while a synchronous standby is
// frozen, every commit on the primary waits for it.
import { randomBytes } from 'node:crypto';
import type { QueryResultRow } from 'pg';
import { PostgresServer } from './postgres.js';
import { childPids, killQuietly } from './server-process.js';
import { waitFor } from './wait-for.js';

export interface PostgresStandbyOptions {
  /**
   * The application_name it streams under: what synchronous_standby_names and pg_stat_replication call it,
   * and the name of its physical slot on the primary. Default: a unique name.
   */
  name?: string;
  /** recovery_min_apply_delay: a Postgres interval ('500ms') or milliseconds. Default: none. */
  applyDelay?: string | number;
  /** Once it streams, make it the primary's synchronous standby (see setSynchronous). Default false. */
  synchronous?: boolean;
  /** Further postgresql.conf settings of the standby (so they win over the primary's copied ones). */
  settings?: Record<string, string | number | boolean>;
  /** How long the base backup plus the first start may take. Default 60_000. */
  startTimeoutMs?: number;
}

export class PostgresStandby {
  readonly name: string;
  readonly primary: PostgresServer;
  readonly server: PostgresServer;
  #pausedPids: number[] | undefined;
  #synchronous = false;
  #destroyed = false;

  private constructor(name: string, primary: PostgresServer, server: PostgresServer) {
    this.name = name;
    this.primary = primary;
    this.server = server;
  }

  /**
   * Takes a base backup of `primary` (which needs max_wal_senders and a free replication slot; the
   * harness's servers have them), starts it as a hot standby and waits until the primary reports it
   * streaming.
   */
  static async start(primary: PostgresServer, options: PostgresStandbyOptions = {}): Promise<PostgresStandby> {
    const name = options.name ?? `standby_${randomBytes(4).toString('hex')}`;
    const conninfo = `host=127.0.0.1 port=${primary.port} user=postgres application_name=${name}`;
    let server: PostgresServer;
    try {
      server = await PostgresServer.startFrom(
        async (target) => {
          // --checkpoint=fast: the default spread checkpoint can take minutes; -C -S: a physical slot, so the
          // primary keeps the WAL a paused or lagging standby still needs.
          await target.run('pg_basebackup', [
            '-D', target.dataDir, '-d', conninfo, '-X', 'stream', '-R', '--checkpoint=fast', '-C', '-S', name, '--no-sync',
          ]);
          target.appendSettings('postgresql.conf', {
            unix_socket_directories: target.dir,
            hot_standby: true,
            ...(options.applyDelay === undefined
              ? {}
              : { recovery_min_apply_delay: typeof options.applyDelay === 'number' ? `${options.applyDelay}ms` : options.applyDelay }),
            ...options.settings,
          });
          // -R wrote primary_conninfo to postgresql.auto.conf, which is read last; say the application_name
          // there explicitly rather than rely on which connection options -R copies.
          target.appendSettings('postgresql.auto.conf', { primary_conninfo: conninfo, primary_slot_name: name });
        },
        options.startTimeoutMs === undefined ? {} : { startTimeoutMs: options.startTimeoutMs },
      );
    } catch (err: unknown) {
      await dropSlot(primary, name).catch(() => undefined);
      throw err;
    }
    const standby = new PostgresStandby(name, primary, server);
    try {
      await waitFor(
        async () => (await standby.#replicationState())?.state === 'streaming',
        { timeoutMs: options.startTimeoutMs ?? 60_000, message: `standby ${name} to stream from the primary` },
      );
      if (options.synchronous === true) await standby.setSynchronous(true);
      return standby;
    } catch (err: unknown) {
      await standby.destroy().catch(() => undefined);
      throw err;
    }
  }

  get port(): number {
    return this.server.port;
  }

  get running(): boolean {
    return this.server.running;
  }

  get paused(): boolean {
    return this.#pausedPids !== undefined;
  }

  get synchronous(): boolean {
    return this.#synchronous;
  }

  url(database = 'postgres'): string {
    return this.server.url(database);
  }

  async query<R extends QueryResultRow = Record<string, unknown>>(sql: string, params: unknown[] = [], database = 'postgres'): Promise<R[]> {
    return await this.server.query<R>(sql, params, database);
  }

  /**
   * Makes it the primary's only synchronous standby (synchronous_standby_names = its name) and waits until
   * the primary reports it 'sync'; or clears synchronous_standby_names and waits until new sessions see it
   * empty. Commits on the primary wait for a synchronous standby's flush: stopping or pausing it makes
   * them hang.
   */
  async setSynchronous(on: boolean): Promise<void> {
    if (on) {
      await this.primary.query(`ALTER SYSTEM SET synchronous_standby_names = ${literal(`"${this.name}"`)}`);
      await this.primary.query('SELECT pg_reload_conf()');
      this.#synchronous = true;
      await waitFor(async () => (await this.#replicationState())?.sync_state === 'sync', {
        timeoutMs: 30_000,
        message: `standby ${this.name} to be reported synchronous`,
      });
    } else {
      await this.primary.query('ALTER SYSTEM RESET synchronous_standby_names');
      await this.primary.query('SELECT pg_reload_conf()');
      this.#synchronous = false;
      await waitFor(async () => (await this.primary.query<{ s: string }>('SELECT current_setting($1) AS s', ['synchronous_standby_names']))[0]?.s === '', {
        timeoutMs: 30_000,
        message: 'synchronous_standby_names to be empty on the primary',
      });
    }
  }

  /**
   * SIGSTOP to the postmaster and every process it has started: the standby neither receives, flushes,
   * acknowledges nor replays WAL, and queries to it hang, until resume(). Its connections stay open, so
   * the primary sees a standby that went quiet, not one that disconnected.
   */
  pause(): void {
    if (this.#pausedPids !== undefined) return;
    const pid = this.server.pid;
    if (pid === undefined) throw new Error(`standby ${this.name} is not running`);
    // The postmaster first, so that it starts no process that the list below would miss.
    killQuietly(pid, 'SIGSTOP');
    const children = childPids(pid);
    for (const child of children) killQuietly(child, 'SIGSTOP');
    this.#pausedPids = [pid, ...children];
  }

  /** SIGCONT to what pause() stopped. */
  resume(): void {
    const pids = this.#pausedPids;
    if (pids === undefined) return;
    this.#pausedPids = undefined;
    for (const pid of pids.slice().reverse()) killQuietly(pid, 'SIGCONT');
  }

  /** pg_last_wal_replay_lsn() of the standby, as text. */
  async replayLsn(): Promise<string> {
    const [row] = await this.query<{ lsn: string | null }>('SELECT pg_last_wal_replay_lsn()::text AS lsn');
    if (row?.lsn == null) throw new Error(`standby ${this.name} reports no replay position`);
    return row.lsn;
  }

  /**
   * Waits until the standby has replayed WAL up to `lsn` (default: the primary's pg_current_wal_lsn() now),
   * so that its snapshots see every transaction committed before; returns the target. With an apply delay,
   * this takes at least that delay after the last commit before the target.
   */
  async waitForReplay(lsn?: string, timeoutMs = 30_000): Promise<string> {
    const target = lsn ?? (await this.primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn;
    await waitFor(
      async () =>
        (await this.query<{ ok: boolean }>('SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::pg_lsn) >= 0 AS ok', [target]))[0]?.ok,
      { timeoutMs, intervalMs: 10, message: `standby ${this.name} to replay up to ${target}` },
    );
    return target;
  }

  /** Shuts the standby down ('fast'). A synchronous standby that is down holds every commit on the primary. */
  async stop(): Promise<void> {
    this.resume();
    await this.server.stop('fast');
  }

  /**
   * Stops being synchronous (so the primary's commits stop waiting for it), throws the standby away and drops
   * its slot on the primary. Safe to call twice; a primary that is already down is left alone.
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.resume();
    try {
      if (this.#synchronous && this.primary.running) await this.setSynchronous(false);
    } finally {
      await this.server.destroy();
      if (this.primary.running) await dropSlot(this.primary, this.name);
    }
  }

  async #replicationState(): Promise<{ state: string; sync_state: string } | undefined> {
    const [row] = await this.primary.query<{ state: string; sync_state: string }>(
      'SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1',
      [this.name],
    );
    return row;
  }
}

/** Drops a physical slot once its walsender has gone (a slot in use cannot be dropped). */
async function dropSlot(primary: PostgresServer, slot: string): Promise<void> {
  await waitFor(
    async () => {
      const rows = await primary.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
      if (rows.length === 0) return true;
      if (rows[0]!.active) return false;
      await primary.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return true;
    },
    { timeoutMs: 30_000, message: `slot ${slot} to be dropped` },
  );
}

function literal(text: string): string {
  return `'${text.replace(/'/g, "''")}'`;
}
