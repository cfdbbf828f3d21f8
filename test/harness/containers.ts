// Servers in containers, for a machine with a Docker engine and without the server binaries (see
// server-backend.ts): created through testcontainers (image pull, its reaper removes the containers when
// the test process dies in any way), then driven as the harness drives a process: start, signal, wait for
// exit, start again on the same data and port, with the output appended to the server's log file. Only
// imported when a server runs in a container, so that CI never loads it.
import { createWriteStream } from 'node:fs';
import { constants } from 'node:os';
import { PassThrough } from 'node:stream';
import {
  GenericContainer,
  getContainerRuntimeClient,
  Network,
  type StartedNetwork,
  type StartedTestContainer,
  type WaitStrategy,
} from 'testcontainers';
import { addresses } from './container-addresses.js';
import { waitExitOrKill, type ExitStatus, type RunningServer } from './server-process.js';

export interface ContainerSpec {
  image: string;
  /** The command (the image's entrypoint stays). */
  command: string[];
  env?: Record<string, string>;
  /** The port the server listens on inside the container, published on 127.0.0.1:hostPort. */
  containerPort: number;
  hostPort: number;
  /** Where the container's stdout and stderr are appended, across starts. */
  logFile: string;
  /** Files written into the container before its first start: container path -> content. */
  files?: Record<string, string>;
  /** The user the command runs as, when not the image's. */
  user?: string;
  /** Its name on the test process's network, where the other containers reach it. */
  alias: string;
  /** The port other containers use, when not containerPort (a broker's listener for them). */
  networkPort?: number;
}

// One network per test process: a container reaches another by its alias (Kafka Connect reaches the
// broker and Postgres so), never through this machine's published ports (container-addresses.ts).
let network: Promise<StartedNetwork> | undefined;
let members = 0;

/** The harness waits for readiness itself (a query, a PING), after every start, not only the first. */
class NoWait implements WaitStrategy {
  #timeoutMs = 60_000;
  async waitUntilReady(): Promise<void> {}
  withStartupTimeout(ms: number): this {
    this.#timeoutMs = ms;
    return this;
  }
  isStartupTimeoutSet(): boolean {
    return true;
  }
  getStartupTimeout(): number {
    return this.#timeoutMs;
  }
}

/** testcontainers publishes on every interface; a test server with trust auth stays on the loopback. */
class LoopbackContainer extends GenericContainer {
  publishOnLoopback(): this {
    for (const bindings of Object.values(this.hostConfig.PortBindings ?? {}) as { HostIp?: string }[][]) {
      for (const binding of bindings) binding.HostIp = '127.0.0.1';
    }
    return this;
  }
}

/** One container: created once, started and stopped as often as a test needs, removed by destroy(). */
export class ServerContainer {
  readonly #started: StartedTestContainer;
  readonly #spec: ContainerSpec;
  #current: ContainerRun | undefined;
  #destroyed = false;

  private constructor(started: StartedTestContainer, spec: ContainerSpec) {
    this.#started = started;
    this.#spec = spec;
  }

  /** Pulls the image when missing, creates the container and starts it; the first run is current. */
  static async start(spec: ContainerSpec): Promise<ServerContainer> {
    let definition = new LoopbackContainer(spec.image)
      .withCommand(spec.command)
      .withEnvironment(spec.env ?? {})
      .withExposedPorts({ container: spec.containerPort, host: spec.hostPort })
      .withWaitStrategy(new NoWait())
      .publishOnLoopback();
    if (spec.user !== undefined) definition = definition.withUser(spec.user);
    members += 1;
    network ??= new Network().start();
    try {
      definition = definition.withNetwork(await network).withNetworkAliases(spec.alias);
    } catch (err: unknown) {
      await leaveNetwork();
      throw err;
    }
    const files = Object.entries(spec.files ?? {});
    if (files.length > 0) definition = definition.withCopyContentToContainer(files.map(([target, content]) => ({ target, content })));
    let started: StartedTestContainer;
    try {
      started = await definition.start();
    } catch (err: unknown) {
      await leaveNetwork();
      throw err;
    }
    addresses.set(spec.hostPort, { host: spec.alias, port: spec.networkPort ?? spec.containerPort });
    const container = new ServerContainer(started, spec);
    container.#current = await ContainerRun.follow(started.getId(), spec.logFile);
    return container;
  }

  get id(): string {
    return this.#started.getId();
  }

  get current(): ContainerRun | undefined {
    return this.#current;
  }

  /** Starts the stopped container again: same filesystem, same published port. */
  async startAgain(): Promise<ContainerRun> {
    const client = await getContainerRuntimeClient();
    await client.container.start(client.container.getById(this.id));
    this.#current = await ContainerRun.follow(this.id, this.#spec.logFile);
    return this.#current;
  }

  /** Freezes every process of the container (the cgroup freezer), like SIGSTOP to all of them. */
  async pause(): Promise<void> {
    const client = await getContainerRuntimeClient();
    await client.container.getById(this.id).pause();
  }

  async unpause(): Promise<void> {
    const client = await getContainerRuntimeClient();
    await client.container.getById(this.id).unpause();
  }

  /** Kills and removes the container and its data. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    addresses.delete(this.#spec.hostPort);
    const client = await getContainerRuntimeClient();
    await client.container
      .getById(this.id)
      .remove({ force: true, v: true })
      .catch((err: unknown) => {
        if ((err as { statusCode?: number }).statusCode !== 404) throw err;
      });
    await this.#current?.exited;
    await leaveNetwork();
  }
}

/** The last container of the process gone, the network goes too. */
async function leaveNetwork(): Promise<void> {
  members -= 1;
  if (members > 0 || network === undefined) return;
  const started = network;
  network = undefined;
  await (await started.catch(() => undefined))?.stop();
}

/** One run of a container, from a start until its main process exits: what ServerProcess is for a process. */
export class ContainerRun implements RunningServer {
  readonly exited: Promise<ExitStatus>;
  readonly pid: number;
  readonly #id: string;
  #status: ExitStatus | undefined;
  #signals: Promise<void> = Promise.resolve();

  private constructor(id: string, pid: number, exited: Promise<number>) {
    this.#id = id;
    this.pid = pid;
    this.exited = exited.then((code) => {
      this.#status = exitStatus(code);
      return this.#status;
    });
  }

  /** The run that just started: follows its exit and appends its output to logFile. */
  static async follow(id: string, logFile: string): Promise<ContainerRun> {
    const client = await getContainerRuntimeClient();
    const container = client.container.getById(id);
    const since = Math.floor(Date.now() / 1000) - 1;
    // 'not-running' answers at once for a container that already exited (one that failed at start).
    const exited = container
      .wait({ condition: 'not-running' })
      .then((result: { StatusCode: number }) => result.StatusCode)
      .catch(() => 137);
    const inspect = await container.inspect();
    const run = new ContainerRun(id, inspect.State.Pid, exited);
    const log = createWriteStream(logFile, { flags: 'a' });
    try {
      const stream = await container.logs({ follow: true, stdout: true, stderr: true, since });
      const out = new PassThrough();
      out.pipe(log);
      client.container.dockerode.modem.demuxStream(stream, out, out);
      stream.on('end', () => out.end());
      stream.on('error', () => out.end());
    } catch {
      log.end();
    }
    return run;
  }

  get running(): boolean {
    return this.#status === undefined;
  }

  get status(): ExitStatus | undefined {
    return this.#status;
  }

  /** Sends a signal to the container's main process (docker kill --signal); in order, and awaitable. */
  signal(signal: NodeJS.Signals): Promise<void> {
    if (!this.running) return this.#signals;
    this.#signals = this.#signals.then(async () => {
      if (!this.running) return;
      const client = await getContainerRuntimeClient();
      await client.container
        .getById(this.#id)
        .kill({ signal })
        .catch((err: unknown) => {
          // 409: not running (it exited meanwhile), 404: removed.
          const status = (err as { statusCode?: number }).statusCode;
          if (status !== 409 && status !== 404) throw err;
        });
    });
    return this.#signals;
  }

  async waitExit(timeoutMs: number): Promise<ExitStatus> {
    return await waitExitOrKill(this, timeoutMs);
  }
}

/** A container's exit code as a process's status: 128 + n is signal n (how Docker reports a kill). */
function exitStatus(code: number): ExitStatus {
  if (code > 128) {
    const name = Object.entries(constants.signals).find(([, number]) => number === code - 128)?.[0];
    if (name !== undefined) return { code: null, signal: name as NodeJS.Signals };
  }
  return { code, signal: null };
}
