// A throwaway MariaDB server for integration tests of the Debezium MariaDB connector: its own data dir,
// socket and port, a row-based binary log, a `cdc` user with every privilege, and lifecycle controls (stop,
// kill -9, restart) for fault tests. Binaries only: Kafka Connect in a container could not reach a server
// on this machine's loopback, and the containers' network has no MariaDB of the harness's (services.ts).
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import mysql, { type Connection, type Pool, type ResultSetHeader, type RowDataPacket } from 'mysql2/promise';
import { freePort, PortInUseError, retryOnPortInUse } from './free-port.js';
import { findMariaDbBinaries, missingMariaDbMessage, type MariaDbBinaries } from './mariadb-binaries.js';
import { OrphanGuard } from './orphan-guard.js';
import {
  logSize,
  logTail,
  makeTempDir,
  readLogFrom,
  removeDir,
  runningAsRoot,
  ServerProcess,
  type RunningServer,
} from './server-process.js';
import { AbortWaitError, waitFor } from './wait-for.js';

export { findMariaDbBinaries, missingMariaDbMessage } from './mariadb-binaries.js';

const execFileAsync = promisify(execFile);

export interface MariaDbServerOptions {
  /** Further mariadbd options (`name: value` becomes `--name=value`), after the harness's (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** How long mariadb-install-db plus the first start may take. Default 60_000. */
  startTimeoutMs?: number;
}

/** A statement's outcome where it returns no rows (INSERT, UPDATE, DDL). */
export interface ExecResult {
  affectedRows: number;
  insertId: number;
}

/** The user tests and Debezium connect as (over TCP); ALL PRIVILEGES covers what Debezium needs. */
const USER = 'cdc';
const PASSWORD = 'cdc-test-password';
/** A Unix socket path must fit in sockaddr_un (108 bytes). */
const MAX_SOCKET_PATH = 100;

export class MariaDbServer {
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  /** The server's own Unix socket (root connects through it to set the server up). */
  readonly socket: string;
  readonly pidFile: string;
  readonly host = '127.0.0.1';
  readonly user = USER;
  readonly password = PASSWORD;
  #port = 0;
  #process: RunningServer | undefined;
  readonly #binaries: MariaDbBinaries;
  readonly #settings: Record<string, string | number | boolean>;
  readonly #startTimeoutMs: number;
  readonly #orphanGuard: OrphanGuard;
  /** Pools by default database ('' for none), created on first use and ended when the server goes down. */
  readonly #pools = new Map<string, Pool>();
  #destroyed = false;

  private constructor(binaries: MariaDbBinaries, dir: string, options: MariaDbServerOptions) {
    this.#binaries = binaries;
    this.dir = dir;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'mariadb.log');
    this.socket = join(dir, 'mariadb.sock');
    this.pidFile = join(dir, 'mariadb.pid');
    this.#settings = options.settings ?? {};
    this.#startTimeoutMs = options.startTimeoutMs ?? 60_000;
    this.#orphanGuard = new OrphanGuard(dir);
  }

  /**
   * Creates a data dir (mariadb-install-db) in a temp dir and starts mariadbd on a free port of
   * 127.0.0.1; resolves once the `cdc` user can connect.
   */
  static async start(options: MariaDbServerOptions = {}): Promise<MariaDbServer> {
    const binaries = findMariaDbBinaries();
    if (binaries === undefined) throw new Error(missingMariaDbMessage());
    const server = new MariaDbServer(binaries, mariaDbTempDir(), options);
    try {
      await server.#installDb();
      await retryOnPortInUse(async () => {
        server.#port = await freePort();
        await server.#startOnce();
      });
      await server.#createUser();
      return server;
    } catch (err: unknown) {
      await server.destroy().catch(() => undefined);
      throw err;
    }
  }

  get port(): number {
    return this.#port;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  /** mariadbd's pid while it runs (one process: its connections are threads). */
  get pid(): number | undefined {
    return this.running ? this.#process?.pid : undefined;
  }

  /** mysql://cdc:…@127.0.0.1:port[/database] */
  url(database?: string): string {
    const path = database === undefined ? '' : `/${encodeURIComponent(database)}`;
    return `mysql://${USER}:${encodeURIComponent(PASSWORD)}@${this.host}:${this.#port}${path}`;
  }

  /**
   * The pool of `cdc` connections to `database` (none by default: qualify the tables), created on first
   * use. DECIMAL and BIGINT values that do not fit a JS number come back as strings, dates as their text.
   * Ended by stop(), kill(), restart() and destroy(): take it again after those.
   */
  pool(database?: string): Pool {
    if (this.#destroyed) throw new Error('pool() after destroy()');
    const key = database ?? '';
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      pool = mysql.createPool({
        host: this.host,
        port: this.#port,
        user: USER,
        password: PASSWORD,
        ...(database === undefined ? {} : { database }),
        connectionLimit: 4,
        maxIdle: 2,
        idleTimeout: 10_000,
        supportBigNumbers: true,
        bigNumberStrings: false,
        dateStrings: true,
        timezone: 'Z',
        charset: 'utf8mb4',
        connectTimeout: 5_000,
      });
      // A pooled connection the server dropped (kill, restart) reports here; the pool replaces it.
      pool.on('connection', (connection) => connection.on('error', () => undefined));
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** Runs one statement (text protocol, `?` placeholders) and returns its rows; [] for a statement without rows. */
  async query<T = Record<string, unknown>>(sql: string, params: unknown[] = [], database?: string): Promise<T[]> {
    const [result] = await this.pool(database).query(sql, params);
    return Array.isArray(result) ? (result as T[]) : [];
  }

  /** Runs one statement that returns no rows (INSERT, UPDATE, DELETE, DDL) and returns its counts. */
  async exec(sql: string, params: unknown[] = [], database?: string): Promise<ExecResult> {
    const [result] = await this.pool(database).query<ResultSetHeader>(sql, params);
    return { affectedRows: result.affectedRows, insertId: Number(result.insertId) };
  }

  /** Creates a database (utf8mb4) and returns its URL. */
  async createDatabase(name: string): Promise<string> {
    await this.exec(`CREATE DATABASE ${quoteIdent(name)} CHARACTER SET utf8mb4`);
    return this.url(name);
  }

  /** Graceful shutdown (SIGTERM): InnoDB and the binary log are closed cleanly. */
  async stop(): Promise<void> {
    await this.#endPools();
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGTERM');
    await proc.waitExit(60_000);
  }

  /**
   * SIGKILL, as a host crash or the OOM killer would, and waits until it is gone. The data dir stays:
   * restart() runs InnoDB's crash recovery and recovers the binary log. Committed transactions survive
   * (innodb_flush_log_at_trx_commit=2 writes the redo log at each commit; only an OS crash loses it).
   */
  async kill(): Promise<void> {
    await this.#endPools();
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGKILL');
    await proc.exited;
  }

  /** Starts the server again on the same data dir and port (stopping it first if it runs). */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop();
    await this.#startOnce();
  }

  /** Kills the server (its data is thrown away) and removes its temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      await this.kill();
    } finally {
      this.#orphanGuard.release();
      removeDir(this.dir);
    }
  }

  /** The options mariadbd runs with; `--no-defaults` first, so no my.cnf of the machine counts. */
  #serverArgs(): string[] {
    const settings: Record<string, string | number | boolean> = {
      ...this.#commonSettings(),
      port: this.#port,
      'bind-address': this.host,
      socket: this.socket,
      'pid-file': this.pidFile,
      tmpdir: this.dir,
      // Debezium reads the row-based binary log: every column of the row before and after (FULL).
      'server-id': 1,
      'log-bin': 'mariadb-bin',
      'binlog-format': 'ROW',
      'binlog-row-image': 'FULL',
      'skip-name-resolve': true,
      // Times in UTC, without needing the time zone tables (Debezium reads TIMESTAMP in the server's zone).
      'default-time-zone': '+00:00',
      'character-set-server': 'utf8mb4',
      'collation-server': 'utf8mb4_general_ci',
      'max-connections': 100,
      ...this.#settings,
    };
    return ['--no-defaults', ...asArgs(settings)];
  }

  /** Settings both mariadb-install-db's bootstrap and the server need (the redo log's size is fixed there first). */
  #commonSettings(): Record<string, string | number | boolean> {
    return {
      // mariadbd refuses to run as root unless told to; the harness does not depend on a mysql OS user.
      ...(runningAsRoot() ? { user: 'root' } : {}),
      datadir: this.dataDir,
      // Small buffers: a start takes well under a second and ~100 MB of memory.
      'innodb-buffer-pool-size': '16M',
      'innodb-log-file-size': '8M',
      'innodb-log-buffer-size': '1M',
      // A commit writes the redo log to the OS without an fsync: a killed process loses nothing.
      'innodb-flush-log-at-trx-commit': 2,
      // io_uring / libaio may be refused in containers and sandboxes; plain I/O works everywhere.
      'innodb-use-native-aio': 0,
      'key-buffer-size': '1M',
      'performance-schema': 'OFF',
    };
  }

  async #installDb(): Promise<void> {
    const args = [
      '--no-defaults',
      // mariadbd's install prefix (/usr for /usr/sbin/mariadbd), where the script finds it and its SQL files.
      `--basedir=${dirname(dirname(this.#binaries.server))}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--skip-name-resolve',
      ...asArgs(this.#commonSettings()),
    ];
    try {
      await execFileAsync(this.#binaries.installDb, args, {
        cwd: this.dir,
        env: this.#env(),
        timeout: this.#startTimeoutMs,
      });
    } catch (err: unknown) {
      const e = err as { stderr?: string; stdout?: string; message?: string };
      throw new Error(`mariadb-install-db failed: ${e.message ?? String(err)}\n${e.stderr ?? ''}${e.stdout ?? ''}`.trim(), { cause: err });
    }
  }

  /** The `cdc` user, from anywhere, with every privilege (Debezium: SELECT, RELOAD, SHOW DATABASES, REPLICATION, BINLOG MONITOR). */
  async #createUser(): Promise<void> {
    await this.#asRoot(async (connection) => {
      await connection.query(`CREATE USER IF NOT EXISTS ?@'%' IDENTIFIED BY ?`, [USER, PASSWORD]);
      await connection.query(`GRANT ALL PRIVILEGES ON *.* TO ?@'%' WITH GRANT OPTION`, [USER]);
    });
  }

  /** Runs `fn` on a connection of root through the server's socket (root@localhost has no password here). */
  async #asRoot<T>(fn: (connection: Connection) => Promise<T>): Promise<T> {
    const connection = await mysql.createConnection({ socketPath: this.socket, user: 'root', connectTimeout: 2_000 });
    connection.on('error', () => undefined);
    try {
      return await fn(connection);
    } finally {
      await connection.end().catch(() => connection.destroy());
    }
  }

  async #startOnce(): Promise<void> {
    const logStart = logSize(this.logFile);
    const proc = await ServerProcess.spawn(this.#binaries.server, this.#serverArgs(), {
      cwd: this.dir,
      logFile: this.logFile,
      env: this.#env(),
    });
    this.#process = proc;
    this.#orphanGuard.track(proc.pid);
    void proc.exited.then(() => {
      if (this.#process === proc) this.#orphanGuard.track(undefined);
    });
    try {
      await waitFor(
        async () => {
          if (!proc.running) {
            if (/address already in use|bind on tcp\/ip port/i.test(readLogFrom(this.logFile, logStart))) throw new PortInUseError(this.#port);
            throw new AbortWaitError(`mariadbd exited during start (${describeExit(proc)})`);
          }
          // The socket is this server's own (its temp dir), so an answer there is ours; mariadbd opens it
          // only after binding the TCP port (a taken port makes it exit instead).
          const port = await this.#asRoot(async (connection) => {
            const [rows] = await connection.query<RowDataPacket[]>('SELECT @@port AS port');
            return Number(rows[0]?.port);
          });
          return port === this.#port;
        },
        { timeoutMs: this.#startTimeoutMs, intervalMs: 50, message: `mariadbd to accept connections on port ${this.#port}` },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the mariadb log ---\n${logTail(this.logFile)}`, { cause: err });
    }
  }

  async #endPools(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map(async (pool) => await pool.end().catch(() => undefined)));
  }

  #env(): NodeJS.ProcessEnv {
    // MYSQL_* variables (MYSQL_PWD, MYSQL_UNIX_PORT, MYSQL_TCP_PORT) and locales of the caller stay out.
    return { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC', HOME: this.dir };
  }
}

function describeExit(proc: RunningServer): string {
  const status = proc.status;
  if (status === undefined) return 'still running';
  return status.signal !== null ? `signal ${status.signal}` : `exit code ${status.code}`;
}

/** `--name=value` options; true is the bare `--name`. */
function asArgs(settings: Record<string, string | number | boolean>): string[] {
  return Object.entries(settings)
    .filter(([, value]) => value !== false)
    .map(([name, value]) => (value === true ? `--${name}` : `--${name}=${String(value)}`));
}

/** The temp dir: the harness's, unless $TMPDIR is so deep that the socket path would not fit. */
function mariaDbTempDir(): string {
  if (join(tmpdir(), 'cdc-mariadb-XXXXXX', 'mariadb.sock').length <= MAX_SOCKET_PATH) return makeTempDir('cdc-mariadb-');
  return mkdtempSync('/tmp/cdc-mariadb-');
}

/** A MariaDB identifier in backquotes. */
export function quoteIdent(name: string): string {
  return `\`${name.replace(/`/g, '``')}\``;
}
