// A throwaway memcached server for integration tests: its own port, and lifecycle controls (stop,
// kill -9, pause, restart) for fault tests; in a container where the binary is missing and Docker
// answers (server-backend.ts).
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { backendFor, IMAGES } from './backend.js';
import type { ServerContainer } from './containers.js';
import { freePort, PortInUseError, retryOnPortInUse } from './free-port.js';
import { OrphanGuard } from './orphan-guard.js';
import { findMemcached, missingMemcachedMessage } from './memcached-binaries.js';
import { logTail, makeTempDir, removeDir, runningAsRoot, ServerProcess, type RunningServer } from './server-process.js';
import { AbortWaitError, waitFor } from './wait-for.js';


export { findMemcached, missingMemcachedMessage } from './memcached-binaries.js';

export class MemcachedServer {
  readonly dir: string;
  readonly logFile: string;
  #port = 0;
  #process: RunningServer | undefined;
  #container: ServerContainer | undefined;
  #paused = false;
  #destroyed = false;
  readonly #binary: string | undefined;
  readonly #orphanGuard: OrphanGuard;

  private constructor(binary: string | undefined, dir: string) {
    this.#binary = binary;
    this.dir = dir;
    this.logFile = join(dir, 'memcached.log');
    this.#orphanGuard = new OrphanGuard(dir);
  }

  static async start(): Promise<MemcachedServer> {
    const choice = backendFor('memcached');
    const binary = choice.backend === 'containers' ? undefined : findMemcached();
    if (choice.backend !== 'containers' && binary === undefined) {
      throw new Error(choice.backend === undefined ? `${missingMemcachedMessage()} Containers: ${choice.reason}.` : missingMemcachedMessage());
    }
    const server = new MemcachedServer(binary, makeTempDir('cdc-memcached-'));
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

  /** As memcached clients and the worker's config list it. */
  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  async stop(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await this.resume();
    await proc.signal('SIGTERM');
    await proc.waitExit(30_000);
  }

  async kill(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGKILL');
    await proc.exited;
    this.#paused = false;
  }

  /** SIGSTOP: the port stays open and nothing is answered. */
  async pause(): Promise<void> {
    if (!this.running || this.#paused) return;
    this.#paused = true;
    await this.#process?.signal('SIGSTOP');
  }

  async resume(): Promise<void> {
    if (!this.#paused) return;
    this.#paused = false;
    await this.#process?.signal('SIGCONT');
  }

  /** Starts it again on the same port, empty (memcached keeps nothing). */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop();
    await this.#startOnce();
  }

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

  async #launch(): Promise<RunningServer> {
    const args = ['-p', String(this.#port), '-U', '0', '-l', '127.0.0.1', '-m', '64', '-t', '2', '-v'];
    if (this.#binary !== undefined) {
      // memcached refuses to run as root unless told whom to run as.
      const proc = await ServerProcess.spawn(this.#binary, runningAsRoot() ? [...args, '-u', 'nobody'] : args, { cwd: this.dir, logFile: this.logFile });
      this.#orphanGuard.track(proc.pid);
      void proc.exited.then(() => {
        if (this.#process === proc) this.#orphanGuard.track(undefined);
      });
      return proc;
    }
    if (this.#container !== undefined) return await this.#container.startAgain();
    const { ServerContainer } = await import('./containers.js');
    try {
      this.#container = await ServerContainer.start({
        image: IMAGES.memcached(),
        command: ['memcached', '-p', '11211', '-U', '0', '-m', '64', '-t', '2', '-v'],
        containerPort: 11211,
        hostPort: this.#port,
        logFile: this.logFile,
        alias: `memcached-${this.#port}`,
      });
    } catch (err: unknown) {
      if (/port is already allocated|address already in use/i.test(String(err))) throw new PortInUseError(this.#port);
      throw err;
    }
    return this.#container.current!;
  }

  async #startOnce(): Promise<void> {
    const proc = await this.#launch();
    this.#process = proc;
    this.#paused = false;
    try {
      await waitFor(
        async () => {
          if (!proc.running) {
            if (/bind|address already in use/i.test(logTail(this.logFile, 5))) throw new PortInUseError(this.#port);
            throw new AbortWaitError('memcached exited during start');
          }
          // The server answering must be ours: two servers started at once can be handed the same free
          // port, and the one that fails to bind it would otherwise take the other's answer for its own.
          const pid = await serverPid(this.#port);
          return this.#binary === undefined ? pid !== undefined : pid === proc.pid;
        },
        { timeoutMs: 30_000, intervalMs: 20, message: `memcached to answer on port ${this.#port}` },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the memcached log ---\n${logTail(this.logFile)}`, { cause: err });
    }
  }
}

/** The pid the server on `port` reports (`stats`), or undefined when none answers. */
async function serverPid(port: number): Promise<number | undefined> {
  return await new Promise<number | undefined>((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = '';
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once('error', () => resolve(undefined));
    socket.once('connect', () => socket.write('stats\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1');
      if (reply.includes('END\r\n')) {
        socket.end();
        const pid = /^STAT pid (\d+)\r$/m.exec(reply);
        resolve(pid === null ? undefined : Number(pid[1]));
      }
    });
    socket.once('close', () => resolve(undefined));
  });
}
