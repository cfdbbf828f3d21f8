// A throwaway Redis server for integration tests: its own port and dir, no persistence, and lifecycle
// controls (stop, kill -9, pause, restart) for fault tests.
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { backendFor, IMAGES } from './backend.js';
import type { ServerContainer } from './containers.js';
import { freePort, PortInUseError, retryOnPortInUse } from './free-port.js';
import { OrphanGuard } from './orphan-guard.js';
import { findRedisServer, missingRedisMessage } from './redis-binaries.js';
import {
  logSize,
  logTail,
  makeTempDir,
  readLogFrom,
  removeDir,
  ServerProcess,
  type RunningServer,
} from './server-process.js';
import { AbortWaitError, waitFor } from './wait-for.js';

export { findRedisServer, missingRedisMessage } from './redis-binaries.js';

export interface RedisServerOptions {
  /** Further `--name value` arguments, after the harness defaults (so they win). */
  args?: string[];
  /** How long a start may take. Default 30_000. */
  startTimeoutMs?: number;
}


export class RedisServer {
  readonly dir: string;
  readonly logFile: string;
  readonly binary: string;
  #port = 0;
  #process: RunningServer | undefined;
  /** Set when the server runs in a container (server-backend.ts). */
  readonly #inContainer: boolean;
  #container: ServerContainer | undefined;
  #paused = false;
  #destroyed = false;
  readonly #extraArgs: string[];
  readonly #startTimeoutMs: number;
  readonly #orphanGuard: OrphanGuard;

  private constructor(binary: string | undefined, dir: string, options: RedisServerOptions) {
    this.binary = binary ?? '';
    this.#inContainer = binary === undefined;
    this.dir = dir;
    this.logFile = join(dir, 'redis.log');
    this.#extraArgs = options.args ?? [];
    this.#startTimeoutMs = options.startTimeoutMs ?? 30_000;
    this.#orphanGuard = new OrphanGuard(dir);
  }

  /**
   * Starts redis-server on a free port of 127.0.0.1, without persistence, in its own temp dir; or, where
   * the binary is missing and Docker answers (server-backend.ts), the same in a container.
   */
  static async start(options: RedisServerOptions = {}): Promise<RedisServer> {
    const choice = backendFor('redis');
    const binary = choice.backend === 'containers' ? undefined : findRedisServer();
    if (choice.backend !== 'containers' && binary === undefined) {
      throw new Error(choice.backend === undefined ? `${missingRedisMessage()} Containers: ${choice.reason}.` : missingRedisMessage());
    }
    const server = new RedisServer(binary, makeTempDir('cdc-redis-'), options);
    try {
      return await retryOnPortInUse(async () => {
        server.#port = await freePort();
        await server.#startOnce();
        return server;
      });
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

  get pid(): number | undefined {
    return this.running ? this.#process?.pid : undefined;
  }

  /** The container's id when the server runs in one. */
  get containerId(): string | undefined {
    return this.#container?.id;
  }

  url(): string {
    return `redis://127.0.0.1:${this.#port}`;
  }

  /** Graceful shutdown (SIGTERM). Nothing is saved: the server has no persistence. */
  async stop(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await this.resume();
    await proc.signal('SIGTERM');
    await proc.waitExit(30_000);
  }

  /** SIGKILL, and waits until the process is gone. */
  async kill(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGKILL');
    await proc.exited;
    this.#paused = false;
  }

  /**
   * SIGSTOP: the server keeps its port and accepted connections but answers nothing, like a host that
   * hangs or a network partition (clients see timeouts, not refused connections).
   */
  async pause(): Promise<void> {
    if (!this.running || this.#paused) return;
    this.#paused = true;
    await this.#process?.signal('SIGSTOP');
  }

  /** SIGCONT after pause(). */
  async resume(): Promise<void> {
    if (!this.#paused) return;
    this.#paused = false;
    await this.#process?.signal('SIGCONT');
  }

  get paused(): boolean {
    return this.#paused;
  }

  /** Starts the server again on the same port (stopping it first if it runs). It comes back empty. */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop();
    await this.#startOnce();
  }

  /** Kills the server and removes its temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      if (this.#container !== undefined) await this.#container.destroy();
      else await this.kill();
    } finally {
      this.#orphanGuard.release();
      removeDir(this.dir);
    }
  }

  async #startOnce(): Promise<void> {
    const args = [
      '--port', String(this.#port),
      '--bind', '127.0.0.1',
      '--save', '',
      '--appendonly', 'no',
      '--dir', this.dir,
      '--daemonize', 'no',
      '--logfile', '',
      ...this.#extraArgs,
    ];
    const logStart = logSize(this.logFile);
    const proc = this.#inContainer ? await this.#launchContainer() : await ServerProcess.spawn(this.binary, args, { cwd: this.dir, logFile: this.logFile });
    this.#process = proc;
    this.#paused = false;
    if (!this.#inContainer) {
      this.#orphanGuard.track(proc.pid);
      void proc.exited.then(() => {
        if (this.#process === proc) this.#orphanGuard.track(undefined);
      });
    }
    try {
      await waitFor(
        async () => {
          if (!proc.running) {
            if (/address already in use/i.test(readLogFrom(this.logFile, logStart))) throw new PortInUseError(this.#port);
            throw new AbortWaitError('redis-server exited during start');
          }
          // The server answering must be ours: two servers started at once can be handed the same free
          // port, and the one that fails to bind it would otherwise take the other's answer for its own.
          const pid = await serverPid(this.#port);
          return this.#inContainer ? pid !== undefined : pid === proc.pid;
        },
        { timeoutMs: this.#startTimeoutMs, intervalMs: 20, message: `redis to answer PING on port ${this.#port}` },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the redis log ---\n${logTail(this.logFile)}`, { cause: err });
    }
  }

  async #launchContainer(): Promise<RunningServer> {
    if (this.#container !== undefined) return await this.#container.startAgain();
    const { ServerContainer } = await import('./containers.js');
    try {
      this.#container = await ServerContainer.start({
        image: IMAGES.redis(),
        // Inside the container: every interface (the published port arrives from outside its loopback),
        // hence no protected mode; the port is published on this machine's 127.0.0.1 only.
        command: ['redis-server', '--port', '6379', '--bind', '0.0.0.0', '--protected-mode', 'no', '--save', '', '--appendonly', 'no', ...this.#extraArgs],
        containerPort: 6379,
        hostPort: this.#port,
        logFile: this.logFile,
        alias: `redis-${this.#port}`,
      });
    } catch (err: unknown) {
      if (/port is already allocated|address already in use/i.test(String(err))) throw new PortInUseError(this.#port);
      throw err;
    }
    const run = this.#container.current;
    if (run === undefined) throw new Error('the redis container did not start');
    return run;
  }
}

/**
 * The pid of the server answering on `port` (INFO's process_id), over a raw socket: no client library,
 * no reconnect logic between us and the answer. Undefined when nothing answers yet, or while it loads.
 */
async function serverPid(port: number): Promise<number | undefined> {
  return await new Promise<number | undefined>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once('error', () => resolve(undefined));
    socket.once('connect', () => socket.write('INFO\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('utf8');
      const pid = /process_id:(\d+)\r\n/.exec(reply);
      // Still loading its data (an append-only file after a restart), it is not ready yet.
      const loading = /\r\nloading:(\d)\r\n/.exec(reply);
      if ((pid !== null && loading !== null) || reply.startsWith('-')) {
        socket.end();
        resolve(pid === null || loading?.[1] !== '0' ? undefined : Number(pid[1]));
      }
    });
    socket.once('close', () => resolve(undefined));
  });
}
