// A throwaway PostgreSQL cluster for integration tests: its own data dir and port, wal_level=logical,
// trust auth on 127.0.0.1, and lifecycle controls (stop, kill -9, restart) for fault tests.
import { execFile } from 'node:child_process';
import { appendFileSync, chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg, { type QueryResultRow } from 'pg';
import { backendFor, IMAGES } from './backend.js';
import type { ServerContainer } from './containers.js';
import { freePort, PortInUseError, retryOnPortInUse } from './free-port.js';
import { OrphanGuard } from './orphan-guard.js';
import { findPostgresBinDir, missingPostgresMessage } from './postgres-binaries.js';
import {
  childPids,
  killQuietly,
  logSize,
  logTail,
  lookupUser,
  makeTempDir,
  readLogFrom,
  removeDir,
  runningAsRoot,
  ServerProcess,
  waitForPidsGone,
  type RunningServer,
  type UserIds,
} from './server-process.js';
import { AbortWaitError, waitFor } from './wait-for.js';

const execFileAsync = promisify(execFile);

export interface PostgresServerOptions {
  /** wal_sender_timeout: a Postgres interval ('60s', '500ms') or milliseconds. Default '60s'. */
  walSenderTimeout?: string | number;
  /** Further postgresql.conf settings, written after the harness defaults (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** How long initdb plus the first start may take. Default 60_000. */
  startTimeoutMs?: number;
}

export type PostgresStopMode = 'fast' | 'immediate';

/** What PostgresServer.startFrom() hands its setup: the server's dirs and ways to act as its OS user. */
export interface DataDirSetup {
  dir: string;
  dataDir: string;
  binDir: string;
  /** Runs a program of binDir (pg_basebackup, say) as the server's OS user, with the harness's environment. */
  run(program: string, args: readonly string[]): Promise<void>;
  /** Appends settings to a config file of the data dir (created if missing). */
  appendSettings(file: string, settings: Record<string, string | number | boolean>): void;
}

const SUPERUSER = 'postgres';

export class PostgresServer {
  readonly dir: string;
  readonly dataDir: string;
  readonly logFile: string;
  readonly binDir: string;
  #port = 0;
  #process: RunningServer | undefined;
  /** Set when the server runs in a container (server-backend.ts): its settings, then the container. */
  #containerSettings: Record<string, string | number | boolean> | undefined;
  #container: ServerContainer | undefined;
  readonly #user: UserIds | undefined;
  readonly #startTimeoutMs: number;
  readonly #orphanGuard: OrphanGuard;
  #destroyed = false;

  private constructor(binDir: string, dir: string, user: UserIds | undefined, startTimeoutMs: number) {
    this.binDir = binDir;
    this.dir = dir;
    this.dataDir = join(dir, 'data');
    this.logFile = join(dir, 'postgres.log');
    this.#user = user;
    this.#startTimeoutMs = startTimeoutMs;
    this.#orphanGuard = new OrphanGuard(dir);
  }

  /**
   * initdb's a fresh cluster in a temp dir and starts it on a free port of 127.0.0.1; or, where the
   * binaries are missing and Docker answers (server-backend.ts), the same in a container.
   */
  static async start(options: PostgresServerOptions = {}): Promise<PostgresServer> {
    const choice = backendFor('postgres');
    if (choice.backend === 'containers') return await PostgresServer.#createInContainer(options);
    return await PostgresServer.#create(options.startTimeoutMs, (server) => server.#initdb(options));
  }

  /** True when servers started by start() run in containers: no data dir, binaries or OS user here. */
  static get inContainers(): boolean {
    return backendFor('postgres').backend === 'containers';
  }

  /**
   * Starts a server on a data dir that `setup` fills instead of initdb (a base backup of another server,
   * say). The data dir's postgresql.conf must `include 'harness-port.conf'`, as the harness's own do:
   * the port is written there.
   */
  static async startFrom(setup: (target: DataDirSetup) => Promise<void>, options: { startTimeoutMs?: number } = {}): Promise<PostgresServer> {
    return await PostgresServer.#create(options.startTimeoutMs, (server) =>
      setup({
        dir: server.dir,
        dataDir: server.dataDir,
        binDir: server.binDir,
        run: (program, args) => server.#run(program, args),
        appendSettings: (file, settings) => server.#appendSettings(file, settings),
      }),
    );
  }

  static async #create(
    startTimeoutMs: number | undefined,
    prepare: (server: PostgresServer) => Promise<void>,
  ): Promise<PostgresServer> {
    const binDir = findPostgresBinDir();
    if (binDir === undefined) {
      const choice = backendFor('postgres');
      throw new Error(choice.backend === undefined ? `${missingPostgresMessage()} Containers: ${choice.reason}.` : missingPostgresMessage());
    }
    // initdb and postgres refuse to run as root; under root (CI) they run as the postgres OS user.
    const user = runningAsRoot() ? postgresOsUser() : undefined;
    const dir = makeTempDir('cdc-pg-', user);
    const server = new PostgresServer(binDir, dir, user, startTimeoutMs ?? 60_000);
    try {
      await prepare(server);
      await server.#startOnFreePort();
      return server;
    } catch (err: unknown) {
      await server.destroy().catch(() => undefined);
      throw err;
    }
  }

  static async #createInContainer(options: PostgresServerOptions): Promise<PostgresServer> {
    const server = new PostgresServer('', makeTempDir('cdc-pg-'), undefined, options.startTimeoutMs ?? 120_000);
    server.#containerSettings = { ...harnessSettings(options), ...options.settings };
    try {
      await server.#startOnFreePort();
      return server;
    } catch (err: unknown) {
      await server.destroy().catch(() => undefined);
      throw err;
    }
  }

  get port(): number {
    return this.#port;
  }

  /** The container's id when the server runs in one. */
  get containerId(): string | undefined {
    return this.#container?.id;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  /** The postmaster's pid while it runs. */
  get pid(): number | undefined {
    return this.running ? this.#process?.pid : undefined;
  }

  url(database = 'postgres'): string {
    return `postgres://${SUPERUSER}@127.0.0.1:${this.#port}/${encodeURIComponent(database)}`;
  }

  /** Creates a database and returns its connection string. */
  async createDatabase(name: string): Promise<string> {
    await this.query(`CREATE DATABASE ${quoteIdent(name)}`);
    return this.url(name);
  }

  /** Runs one statement on a short-lived connection and returns its rows. */
  async query<R extends QueryResultRow = Record<string, unknown>>(
    sql: string,
    params: unknown[] = [],
    database = 'postgres',
  ): Promise<R[]> {
    const client = new pg.Client({ connectionString: this.url(database) });
    await client.connect();
    try {
      const result = await client.query<R>(sql, params);
      return result.rows;
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /**
   * Shuts the server down. 'fast' (SIGINT) rolls back open transactions, disconnects clients and writes a
   * checkpoint; 'immediate' (SIGQUIT) aborts without a checkpoint, so the next start runs crash recovery.
   */
  async stop(mode: PostgresStopMode = 'fast'): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal(mode === 'fast' ? 'SIGINT' : 'SIGQUIT');
    // The postmaster exits only after its children have; the timeout is for a wedged server.
    await proc.waitExit(60_000);
  }

  /**
   * SIGKILLs the postmaster and every backend at once, as a host crash or the OOM killer would, and
   * waits until they are gone. Killing only the postmaster would leave backends that exit on their own a
   * moment later, and a restart before then fails because they still hold the shared memory segment.
   */
  async kill(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    // A container's main process takes every process of the container with it.
    const children = this.#container === undefined ? childPids(proc.pid) : [];
    await proc.signal('SIGKILL');
    for (const pid of children) killQuietly(pid);
    await proc.exited;
    await waitForPidsGone(children, 30_000, 'postgres backends');
  }

  /** Starts the server again on the same data dir and port (stopping it first if it runs). */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop('fast');
    await this.#startOnce();
  }

  /** Stops the server (immediately: its data is thrown away) and removes its temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      if (this.#container !== undefined) await this.#container.destroy();
      else await this.stop('immediate');
    } finally {
      this.#killTreeNow();
      this.#orphanGuard.release();
      removeDir(this.dir);
    }
  }

  /** Runs a program of binDir as the server's OS user, with the harness's environment. */
  async #run(program: string, args: readonly string[]): Promise<void> {
    try {
      await execFileAsync(join(this.binDir, program), args, {
        cwd: this.dir,
        env: this.#env(),
        timeout: this.#startTimeoutMs,
        ...(this.#user === undefined ? {} : { uid: this.#user.uid, gid: this.#user.gid }),
      });
    } catch (err: unknown) {
      const e = err as { stderr?: string; stdout?: string; message?: string };
      throw new Error(`${program} failed: ${e.message ?? String(err)}\n${e.stderr ?? ''}${e.stdout ?? ''}`.trim(), {
        cause: err,
      });
    }
  }

  /** Appends settings to a config file of the data dir; later lines win over earlier ones. */
  #appendSettings(file: string, settings: Record<string, string | number | boolean>): void {
    const lines = Object.entries(settings).map(([name, value]) => `${name} = ${confValue(value)}`);
    const path = join(this.dataDir, file);
    appendFileSync(path, `\n# test harness\n${lines.join('\n')}\n`, { mode: 0o600 });
    if (this.#user !== undefined) chownSync(path, this.#user.uid, this.#user.gid);
  }

  async #initdb(options: PostgresServerOptions): Promise<void> {
    await this.#run('initdb', ['-D', this.dataDir, '-U', SUPERUSER, '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync']);

    const settings: Record<string, string | number | boolean> = {
      listen_addresses: '127.0.0.1',
      unix_socket_directories: this.dir,
      ...harnessSettings(options),
      ...options.settings,
    };
    const lines = Object.entries(settings).map(([name, value]) => `${name} = ${confValue(value)}`);
    appendFileSync(
      join(this.dataDir, 'postgresql.conf'),
      `\n# test harness\n${lines.join('\n')}\ninclude 'harness-port.conf'\n`,
    );
    this.#writeFile(
      'pg_hba.conf',
      [
        '# test harness: trust everything local, including replication connections',
        'local all         all                trust',
        'local replication all                trust',
        'host  all         all  127.0.0.1/32  trust',
        'host  replication all  127.0.0.1/32  trust',
        '',
      ].join('\n'),
    );
  }

  async #startOnFreePort(): Promise<void> {
    await retryOnPortInUse(async () => {
      this.#port = await freePort();
      if (this.#containerSettings === undefined) this.#writeFile('harness-port.conf', `port = ${this.#port}\n`);
      await this.#startOnce();
    });
  }

  /** Starts the postmaster (or the container) once; a port already taken is a PortInUseError. */
  async #launch(): Promise<RunningServer> {
    if (this.#containerSettings !== undefined) return await this.#launchContainer(this.#containerSettings);
    const proc = await ServerProcess.spawn(join(this.binDir, 'postgres'), ['-D', this.dataDir], {
      cwd: this.dir,
      logFile: this.logFile,
      user: this.#user,
      env: this.#env(),
    });
    this.#orphanGuard.track(proc.pid);
    void proc.exited.then(() => {
      if (this.#process === proc) this.#orphanGuard.track(undefined);
    });
    return proc;
  }

  async #launchContainer(settings: Record<string, string | number | boolean>): Promise<RunningServer> {
    if (this.#container !== undefined) return await this.#container.startAgain();
    const { ServerContainer } = await import('./containers.js');
    try {
      this.#container = await ServerContainer.start({
        image: IMAGES.postgres(),
        command: ['postgres', ...Object.entries(settings).flatMap(([name, value]) => ['-c', `${name}=${plainValue(value)}`])],
        env: {
          POSTGRES_HOST_AUTH_METHOD: 'trust',
          POSTGRES_INITDB_ARGS: '--encoding=UTF8 --locale=C --no-sync',
          TZ: 'UTC',
          PGTZ: 'UTC',
        },
        containerPort: 5432,
        hostPort: this.#port,
        logFile: this.logFile,
        alias: `postgres-${this.#port}`,
      });
    } catch (err: unknown) {
      if (/port is already allocated|address already in use/i.test(String(err))) throw new PortInUseError(this.#port);
      throw err;
    }
    const run = this.#container.current;
    if (run === undefined) throw new Error('the postgres container did not start');
    return run;
  }

  async #startOnce(): Promise<void> {
    const logStart = logSize(this.logFile);
    const proc = await this.#launch();
    this.#process = proc;
    try {
      await waitFor(
        async () => {
          if (!proc.running) {
            const log = readLogFrom(this.logFile, logStart);
            if (/could not bind|address already in use/i.test(log)) throw new PortInUseError(this.#port);
            throw new AbortWaitError(`postgres exited during start (${describeExit(proc)})`);
          }
          await this.query('SELECT 1');
          return true;
        },
        { timeoutMs: this.#startTimeoutMs, intervalMs: 50, message: `postgres to accept connections on port ${this.#port}` },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the postgres log ---\n${logTail(this.logFile)}`, { cause: err });
    }
  }

  #writeFile(name: string, text: string): void {
    const path = join(this.dataDir, name);
    writeFileSync(path, text, { mode: 0o600 });
    if (this.#user !== undefined) chownSync(path, this.#user.uid, this.#user.gid);
  }

  #env(): NodeJS.ProcessEnv {
    // Locale and PG* variables of the caller must not leak into initdb or the server.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };
    if (this.#user !== undefined) {
      env.HOME = this.dir;
      env.USER = this.#user.name;
      env.LOGNAME = this.#user.name;
    }
    return env;
  }

  #killTreeNow(): void {
    const proc = this.#process;
    if (proc === undefined || !proc.running || this.#container !== undefined) return;
    const children = childPids(proc.pid);
    killQuietly(proc.pid);
    for (const pid of children) killQuietly(pid);
  }
}

function describeExit(proc: RunningServer): string {
  const status = proc.status;
  if (status === undefined) return 'still running';
  return status.signal !== null ? `signal ${status.signal}` : `exit code ${status.code}`;
}

/** The settings every harness server runs with, whether from binaries or in a container. */
function harnessSettings(options: PostgresServerOptions): Record<string, string | number | boolean> {
  const walSenderTimeout =
    typeof options.walSenderTimeout === 'number' ? `${options.walSenderTimeout}ms` : (options.walSenderTimeout ?? '60s');
  return {
    wal_level: 'logical',
    max_replication_slots: 20,
    max_wal_senders: 20,
    wal_sender_timeout: walSenderTimeout,
    // A throwaway cluster: surviving an OS crash buys nothing, and fsync costs seconds per test file.
    // A killed *process* loses nothing with fsync off (written WAL stays in the page cache).
    fsync: false,
    // Kept on, deliberately: with it off, a commit returns before its WAL leaves shared memory, and a
    // kill -9 within the next ~600 ms silently loses committed transactions, which would make every
    // "kill Postgres, nothing was lost" test flaky. With fsync off it costs only a write() per commit.
    synchronous_commit: true,
    max_connections: 100,
    shared_buffers: '32MB',
  };
}

/** A setting as `postgres -c name=value` takes it (no quoting: the value is one argument). */
function plainValue(value: string | number | boolean): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  return String(value);
}

function confValue(value: string | number | boolean): string {
  if (typeof value === 'boolean') return value ? 'on' : 'off';
  if (typeof value === 'number') return String(value);
  return `'${value.replace(/'/g, "''")}'`;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function postgresOsUser(): UserIds {
  const user = lookupUser('postgres');
  if (user === undefined) {
    throw new Error(
      'running as root, and PostgreSQL refuses to run as root, but there is no "postgres" OS user to run it as. ' +
        'Installing the Debian postgresql package creates it; or: useradd --system --home /var/lib/postgresql postgres',
    );
  }
  return user;
}
