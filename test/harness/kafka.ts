// A throwaway Kafka broker (KRaft: one process that is both broker and controller, no ZooKeeper) and a
// Kafka Connect worker (standalone) running the Debezium PostgreSQL and MariaDB connectors, for the
// integration tests of the Debezium source. Both are plain JVMs started from the jars that
// test/kafka/pom.xml fetches (`mvn -q -f test/kafka/pom.xml dependency:copy-dependencies`, which .ci/run
// does), each with its own temp dir, free ports, a log file, and the same cleanup as the Postgres and
// Redis harnesses: a test process that dies, even by kill -9, takes its JVMs with it (orphan-guard.ts).
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  constants,
  copyFileSync,
  existsSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import mysql, { type RowDataPacket } from 'mysql2/promise';
import pg from 'pg';
import { backendFor, IMAGES } from './backend.js';
import { addressInNetwork } from './container-addresses.js';
import type { ServerContainer } from './containers.js';
import { freePort, PortInUseError, retryOnPortInUse } from './free-port.js';
import { OrphanGuard } from './orphan-guard.js';
import {
  logSize,
  logTail,
  makeTempDir,
  readLogFrom,
  removeDir,
  ServerProcess,
  type ExitStatus,
  type RunningServer,
} from './server-process.js';
import { isCI } from './ci.js';
import { findJava, kafkaLibDir, kafkaMissingReason } from './kafka-binaries.js';

export { findJava, kafkaLibDir, kafkaMissingReason } from './kafka-binaries.js';
import { AbortWaitError, waitFor } from './wait-for.js';

/** The broker's ports inside its container (server-backend.ts): clients, other containers, controller. */
const CONTAINER_KAFKA_PORT = 9092;
const CONTAINER_INTERNAL_PORT = 9094;
const CONTAINER_CONTROLLER_PORT = 9093;
/** Kafka Connect's REST port inside its container. */
const CONTAINER_CONNECT_PORT = 8083;
const CONTAINER_CONNECT_OFFSETS = '/tmp/connect.offsets';
/** Small heaps and a fast-starting JIT: the broker and the worker each need well under 300 MB this way. */
const JVM_OPTIONS = [
  '-Xms64m',
  '-Xmx256m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Xss512k',
  '-Djava.awt.headless=true',
  '-Djava.net.preferIPv4Stack=true',
];

// --- where the jars and java are: kafka-binaries.ts ---

/**
 * Like servicesMissing(): a reason to skip (with a warning), or false. Always false under CI=true, so that
 * there missing jars fail the tests with the message saying what to run.
 */
export function kafkaMissing(): string | false {
  if (isCI()) return false;
  const choice = backendFor('kafka');
  if (choice.backend !== undefined) return false;
  const reason = `${kafkaMissingReason() ?? ''} Containers: ${choice.reason}.`.trim();
  console.warn(`skipping: ${reason}`);
  return reason;
}

/** True when the broker and Connect run in containers here (server-backend.ts). */
function kafkaInContainers(): boolean {
  return backendFor('kafka').backend === 'containers';
}

function requireJava(): string {
  const reason = kafkaMissingReason();
  const java = findJava();
  if (reason !== undefined || java === undefined) throw new Error(reason ?? 'java not found');
  return java;
}

type JarSet = 'broker' | 'broker4' | 'connect';

/**
 * The jars of one set, sorted, as an explicit list: a class data sharing archive records the classpath,
 * and `dir/*` would leave its order to the directory listing.
 */
function classpath(kind: JarSet): string {
  const dir = join(kafkaLibDir(), kind);
  return readdirSync(dir)
    .filter((name) => name.endsWith('.jar'))
    .sort()
    .map((name) => join(dir, name))
    .join(':');
}

// --- class data sharing: a JVM loads its classes from an archive the first clean run recorded ---
// On a busy 2-core machine, most of a start is class loading: the broker starts in ~5 s with the archive
// and in ~20 s without (measured with other test files running). The archive lives beside the jars
// (KAFKA_TEST_CDS=0 turns this off); the JVM checks it against the JDK and the jars' sizes and times, and
// ignores it (with a warning in the log) when they differ.

function cdsEnabled(): boolean {
  const value = process.env.KAFKA_TEST_CDS;
  return value !== '0' && value !== 'false';
}

function cdsArchivePath(kind: JarSet, java: string, cp: string): string {
  let javaId = java;
  try {
    const real = realpathSync(java);
    javaId = `${real}:${statSync(real).mtimeMs}`;
  } catch {
    // keep the path alone
  }
  const hash = createHash('sha256').update(`${javaId}\n${cp}`).digest('hex').slice(0, 12);
  return join(kafkaLibDir(), `${kind}-${hash}.jsa`);
}

interface CdsPlan {
  args: string[];
  /** Where this run records an archive (in the server's dir), to publish after a clean exit. */
  recording?: { file: string; archive: string };
}

function cdsPlan(kind: JarSet, java: string, cp: string, dir: string, mayRecord: boolean): CdsPlan {
  if (!cdsEnabled()) return { args: [] };
  const archive = cdsArchivePath(kind, java, cp);
  if (existsSync(archive)) return { args: [`-XX:SharedArchiveFile=${archive}`, '-Xshare:auto'] };
  if (!mayRecord) return { args: [] };
  try {
    accessSync(kafkaLibDir(), constants.W_OK);
  } catch {
    return { args: [] };
  }
  const file = join(dir, `${kind}.jsa`);
  return { args: [`-XX:ArchiveClassesAtExit=${file}`], recording: { file, archive } };
}

/** Moves a recorded archive beside the jars, unless another process got there first. */
function publishCdsArchive(recording: { file: string; archive: string }, status: ExitStatus): void {
  // A JVM that was SIGKILLed may have left half an archive.
  if (status.signal !== null || !existsSync(recording.file) || existsSync(recording.archive)) return;
  const temp = `${recording.archive}.${process.pid}.tmp`;
  try {
    copyFileSync(recording.file, temp);
    renameSync(temp, recording.archive);
  } catch {
    rmSync(temp, { force: true });
  }
}

function javaEnv(dir: string): NodeJS.ProcessEnv {
  // Options meant for another JVM must not reach these ones.
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dir, TZ: 'UTC', LC_ALL: 'C' };
  delete env.JAVA_TOOL_OPTIONS;
  delete env._JAVA_OPTIONS;
  delete env.JDK_JAVA_OPTIONS;
  delete env.NODE_OPTIONS;
  return env;
}

function log4j2Properties(quiet: string[]): string {
  return [
    'status = warn',
    'appender.stdout.type = Console',
    'appender.stdout.name = STDOUT',
    'appender.stdout.layout.type = PatternLayout',
    'appender.stdout.layout.pattern = [%d] %p %m (%c)%n',
    'rootLogger.level = INFO',
    'rootLogger.appenderRef.stdout.ref = STDOUT',
    ...quiet.flatMap((logger, i) => [`logger.q${i}.name = ${logger}`, `logger.q${i}.level = WARN`]),
    '',
  ].join('\n');
}

function log4jProperties(quiet: string[]): string {
  return [
    'log4j.rootLogger=INFO, stdout',
    'log4j.appender.stdout=org.apache.log4j.ConsoleAppender',
    'log4j.appender.stdout.layout=org.apache.log4j.PatternLayout',
    'log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n',
    ...quiet.map((logger) => `log4j.logger.${logger}=WARN`),
    '',
  ].join('\n');
}

function properties(values: Record<string, string | number | boolean>): string {
  return `${Object.entries(values)
    .map(([key, value]) => `${key}=${String(value).replace(/\\/g, '\\\\')}`)
    .join('\n')}\n`;
}

function describeExit(proc: RunningServer): string {
  const status = proc.status;
  if (status === undefined) return 'still running';
  return status.signal !== null ? `signal ${status.signal}` : `exit code ${status.code}`;
}

async function portOpen(port: number): Promise<boolean> {
  return await new Promise<boolean>((resolvePromise) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(1_000, () => socket.destroy());
    socket.once('connect', () => {
      socket.end();
      resolvePromise(true);
    });
    socket.once('error', () => resolvePromise(false));
    socket.once('close', () => resolvePromise(false));
  });
}

/** Resident memory of a process in bytes (Linux /proc), or undefined. */
export function residentBytes(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

// --- the broker ---

export interface KafkaBrokerOptions {
  /** The broker line: 3 (3.9, the Debezium 3.0 stack; the default) or 4 (the newest 4.x). */
  version?: 3 | 4;
  /** Further server.properties settings, written after the harness defaults (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** How long a start may take. Default 90_000. */
  startTimeoutMs?: number;
}

/** A single-node KRaft Kafka cluster: one JVM, broker and controller in one, data in a temp dir. */
export class KafkaBroker {
  readonly dir: string;
  readonly logFile: string;
  readonly dataDir: string;
  readonly clusterId: string;
  #port = 0;
  #controllerPort = 0;
  #process: RunningServer | undefined;
  /** Set when the broker runs in a container: java is then the image's. */
  #container: ServerContainer | undefined;
  readonly #inContainer: boolean;
  /** Set while the running JVM records a class data sharing archive (see cdsPlan). */
  #cdsRecording: { file: string; archive: string } | undefined;
  #destroyed = false;
  readonly #java: string;
  readonly #options: KafkaBrokerOptions;
  readonly #orphanGuard: OrphanGuard;

  private constructor(java: string | undefined, dir: string, options: KafkaBrokerOptions) {
    this.#java = java ?? '';
    this.#inContainer = java === undefined;
    this.dir = dir;
    this.logFile = join(dir, 'kafka.log');
    this.dataDir = join(dir, 'data');
    // A cluster id is 16 random bytes, base64url without padding (what `kafka-storage random-uuid` prints).
    // One that starts with "-" would be read as an option by kafka-storage's argument parser (as its
    // own random-uuid avoids too).
    let id = randomBytes(16).toString('base64url');
    while (id.startsWith('-')) id = randomBytes(16).toString('base64url');
    this.clusterId = id;
    this.#options = options;
    this.#orphanGuard = new OrphanGuard(dir);
  }

  /** Formats a fresh log dir and starts the broker on free ports of 127.0.0.1; resolves once it serves metadata. */
  static async start(options: KafkaBrokerOptions = {}): Promise<KafkaBroker> {
    const java = kafkaInContainers() ? undefined : requireJava();
    const broker = new KafkaBroker(java, makeTempDir('cdc-kafka-'), options);
    try {
      const quiet = ['kafka.log', 'state.change.logger', 'kafka.coordinator', 'org.apache.kafka.storage', 'org.apache.kafka.raft', 'org.apache.kafka.image', 'org.apache.kafka.metadata', 'org.apache.kafka.controller', 'kafka.server.metadata'];
      writeFileSync(join(broker.dir, 'log4j.properties'), log4jProperties(quiet));
      writeFileSync(join(broker.dir, 'log4j2.properties'), log4j2Properties(quiet));
      return await retryOnPortInUse(async (attempt) => {
        broker.#port = await freePort();
        broker.#controllerPort = await freePort();
        broker.#writeConfig();
        if (attempt === 1 && !broker.#inContainer) await broker.#format();
        await broker.#startOnce();
        return broker;
      });
    } catch (err: unknown) {
      await broker.destroy().catch(() => undefined);
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

  /** "127.0.0.1:port", for bootstrap.servers and kafkajs' brokers. */
  bootstrap(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** A kafkajs client for this broker, quiet and with short retries. */
  client(clientId = 'cdc-test'): Kafka {
    return new Kafka({
      clientId,
      brokers: [this.bootstrap()],
      logLevel: logLevel.NOTHING,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 1_000 },
    });
  }

  /** Graceful shutdown (SIGTERM: controlled shutdown, logs flushed). */
  async stop(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGTERM');
    await proc.waitExit(60_000);
  }

  /** SIGKILL, and waits until the JVM is gone. */
  async kill(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGKILL');
    await proc.exited;
  }

  /** The container's id when the broker runs in one. */
  get containerId(): string | undefined {
    return this.#container?.id;
  }

  /** Starts the broker again on the same ports and data (stopping it first if it runs). */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop();
    await this.#startOnce();
  }

  /** Kills the broker (its data is thrown away) and removes its temp dir. Safe to call twice. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      // A JVM recording its class data sharing archive writes it on a clean exit only.
      if (this.#cdsRecording !== undefined) await this.stop();
      if (this.#container !== undefined) await this.#container.destroy();
      else await this.kill();
    } finally {
      this.#orphanGuard.release();
      removeDir(this.dir);
    }
  }

  #writeConfig(): void {
    const settings: Record<string, string | number | boolean> = {
      ...this.#settings(),
      // In a container: this machine's clients on the published port (advertised as 127.0.0.1:port),
      // other containers (Kafka Connect) on the network's alias, and the controller inside.
      ...(this.#inContainer
        ? {
            'controller.quorum.voters': `1@localhost:${CONTAINER_CONTROLLER_PORT}`,
            listeners: `PLAINTEXT://0.0.0.0:${CONTAINER_KAFKA_PORT},INTERNAL://0.0.0.0:${CONTAINER_INTERNAL_PORT},CONTROLLER://localhost:${CONTAINER_CONTROLLER_PORT}`,
            'advertised.listeners': `PLAINTEXT://127.0.0.1:${this.#port},INTERNAL://${this.#alias}:${CONTAINER_INTERNAL_PORT}`,
            'inter.broker.listener.name': 'INTERNAL',
            'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT',
            'log.dirs': '/var/lib/kafka/data',
          }
        : {}),
      ...this.#options.settings,
    };
    writeFileSync(join(this.dir, 'server.properties'), properties(settings));
  }

  get #alias(): string {
    return `kafka-${this.#port}`;
  }

  #settings(): Record<string, string | number | boolean> {
    return {
      'process.roles': 'broker,controller',
      'node.id': 1,
      'controller.quorum.voters': `1@127.0.0.1:${this.#controllerPort}`,
      listeners: `PLAINTEXT://127.0.0.1:${this.#port},CONTROLLER://127.0.0.1:${this.#controllerPort}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${this.#port}`,
      'controller.listener.names': 'CONTROLLER',
      'inter.broker.listener.name': 'PLAINTEXT',
      'listener.security.protocol.map': 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT',
      'log.dirs': this.dataDir,
      'num.partitions': 1,
      'default.replication.factor': 1,
      'offsets.topic.replication.factor': 1,
      'offsets.topic.num.partitions': 1,
      'transaction.state.log.replication.factor': 1,
      'transaction.state.log.min.isr': 1,
      'transaction.state.log.num.partitions': 1,
      'share.coordinator.state.topic.replication.factor': 1,
      'group.initial.rebalance.delay.ms': 0,
      'auto.create.topics.enable': true,
      'num.network.threads': 2,
      'num.io.threads': 2,
      'background.threads': 2,
      'log.cleaner.enable': false,
      'log.segment.bytes': 16 * 1024 * 1024,
    };
  }

  /** `kafka-storage format`: kafka.tools.StorageTool (in kafka_2.13 for 3.x). */
  /** The broker's release, from its jar's name (kafka_2.13-<version>.jar). */
  get version(): string {
    if (this.#inContainer) return this.#image.slice(this.#image.lastIndexOf(':') + 1);
    const jar = readdirSync(join(kafkaLibDir(), this.#jars)).find((name) => /^kafka_2\.13-.+\.jar$/.test(name));
    return jar?.slice('kafka_2.13-'.length, -'.jar'.length) ?? 'unknown';
  }

  get #image(): string {
    return this.#options.version === 4 ? IMAGES.kafka4() : IMAGES.kafka();
  }

  get #jars(): JarSet {
    return this.#options.version === 4 ? 'broker4' : 'broker';
  }

  /** Kafka 3 logs through log4j 1 (reload4j), Kafka 4 through log4j 2. */
  get #logging(): string {
    return this.#options.version === 4
      ? `-Dlog4j2.configurationFile=${join(this.dir, 'log4j2.properties')}`
      : `-Dlog4j.configuration=file:${join(this.dir, 'log4j.properties')}`;
  }

  async #format(): Promise<void> {
    const cp = classpath(this.#jars);
    const args = [
      ...JVM_OPTIONS,
      ...cdsPlan(this.#jars, this.#java, cp, this.dir, false).args,
      this.#logging,
      '-cp',
      cp,
      'kafka.tools.StorageTool',
      'format',
      '--ignore-formatted',
      '--cluster-id',
      this.clusterId,
      '--config',
      join(this.dir, 'server.properties'),
    ];
    const proc = await ServerProcess.spawn(this.#java, args, { cwd: this.dir, logFile: this.logFile, env: javaEnv(this.dir) });
    this.#orphanGuard.track(proc.pid);
    const status = await proc.waitExit(this.#options.startTimeoutMs ?? 90_000);
    this.#orphanGuard.track(undefined);
    if (status.code !== 0) {
      throw new Error(`kafka storage format failed (${describeExit(proc)})\n--- last lines of the kafka log ---\n${logTail(this.logFile)}`);
    }
  }

  async #launch(): Promise<RunningServer> {
    if (this.#inContainer) return await this.#launchContainer();
    const cp = classpath(this.#jars);
    const cds = cdsPlan(this.#jars, this.#java, cp, this.dir, this.#cdsRecording === undefined);
    const args = [
      ...JVM_OPTIONS,
      ...cds.args,
      this.#logging,
      `-Dkafka.logs.dir=${this.dir}`,
      `-Djava.io.tmpdir=${this.dir}`,
      '-cp',
      cp,
      'kafka.Kafka',
      join(this.dir, 'server.properties'),
    ];
    const proc = await ServerProcess.spawn(this.#java, args, { cwd: this.dir, logFile: this.logFile, env: javaEnv(this.dir) });
    this.#cdsRecording = cds.recording;
    this.#orphanGuard.track(proc.pid);
    void proc.exited.then((status) => {
      if (this.#process === proc) this.#orphanGuard.track(undefined);
      if (cds.recording !== undefined) {
        publishCdsArchive(cds.recording, status);
        if (this.#cdsRecording === cds.recording) this.#cdsRecording = undefined;
      }
    });
    return proc;
  }

  /** The image's own scripts format the log dir (once) and start the broker on the harness's config. */
  async #launchContainer(): Promise<RunningServer> {
    if (this.#container !== undefined) return await this.#container.startAgain();
    const { ServerContainer } = await import('./containers.js');
    const config = '/tmp/harness-server.properties';
    try {
      this.#container = await ServerContainer.start({
        image: this.#image,
        command: [
          '/bin/sh',
          '-c',
          `set -e; /opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id '${this.clusterId}' --config ${config}; ` +
            `exec /opt/kafka/bin/kafka-server-start.sh ${config}`,
        ],
        env: { KAFKA_HEAP_OPTS: '-Xms64m -Xmx256m' },
        containerPort: CONTAINER_KAFKA_PORT,
        hostPort: this.#port,
        logFile: this.logFile,
        files: { [config]: readFileSync(join(this.dir, 'server.properties'), 'utf8') },
        alias: this.#alias,
        networkPort: CONTAINER_INTERNAL_PORT,
      });
    } catch (err: unknown) {
      if (/port is already allocated|address already in use/i.test(String(err))) throw new PortInUseError('kafka');
      throw err;
    }
    const run = this.#container.current;
    if (run === undefined) throw new Error('the kafka container did not start');
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
            if (/address already in use/i.test(readLogFrom(this.logFile, logStart))) throw new PortInUseError('kafka');
            throw new AbortWaitError(`kafka exited during start (${describeExit(proc)})`);
          }
          if (!(await portOpen(this.#port))) return false;
          return await this.#answersMetadata();
        },
        {
          timeoutMs: this.#options.startTimeoutMs ?? 90_000,
          intervalMs: 100,
          message: `kafka to serve metadata on ${this.bootstrap()}`,
        },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the kafka log ---\n${logTail(this.logFile)}`, { cause: err });
    }
  }

  /** A metadata round trip: the broker is registered with the controller and lists itself. */
  async #answersMetadata(): Promise<boolean> {
    const admin: Admin = new Kafka({
      clientId: 'cdc-test-ready',
      brokers: [this.bootstrap()],
      logLevel: logLevel.NOTHING,
      connectionTimeout: 1_000,
      requestTimeout: 2_000,
      retry: { retries: 0 },
    }).admin();
    try {
      await admin.connect();
      const cluster = await admin.describeCluster();
      return cluster.brokers.some((b) => b.port === this.#port) && cluster.controller !== null;
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
  }
}

// --- Kafka Connect with Debezium ---

export interface ConnectWorkerOptions {
  /** The broker's bootstrap address, "127.0.0.1:port". */
  bootstrap: string;
  /**
   * Where the PostgreSQL connectors connect; the harness's Postgres: { host: '127.0.0.1', port: pg.port,
   * user: 'postgres' }. Needed only by createPostgresConnector (a MariaDB connector names its server itself).
   */
  postgres?: { host: string; port: number; user: string; password?: string; database?: string };
  /**
   * JsonConverter's schemas.enable for keys and values. true (the Kafka default): every message is
   * { schema, payload }; false: the payload alone. Default true.
   */
  schemasEnable?: boolean;
  /** Further worker properties, written after the harness defaults (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** How long a start may take. Default 90_000. */
  startTimeoutMs?: number;
}

export interface PostgresConnectorOptions {
  /** Connector name (unique per worker). */
  name: string;
  /** Database to capture; default the worker's postgres.database. */
  database?: string;
  /** Replication slot Debezium creates (pgoutput) or reuses. */
  slot: string;
  /** Publication streamed from. */
  publication: string;
  /**
   * How the publication is made: 'filtered' (default) lets Debezium create it FOR the listed tables;
   * 'disabled' expects the test to have created it.
   */
  publicationMode?: 'filtered' | 'disabled' | 'all_tables';
  /** Qualified table names, "public.items"; also the publication's tables in 'filtered' mode. */
  tables: string[];
  /** Topics are <topicPrefix>.<schema>.<table>. */
  topicPrefix: string;
  /** 'initial' (existing rows as op "r" first) or 'no_data' (changes only; Debezium 3 spells "never" so). Default 'no_data'. */
  snapshotMode?: 'initial' | 'no_data' | 'never' | 'always' | 'when_needed';
  /**
   * This connector's JsonConverter schemas.enable (keys and values), overriding the worker's: one worker
   * can serve both message shapes. Default: the worker's.
   */
  schemasEnable?: boolean;
  /** Further connector properties, after the harness defaults (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** Wait until the slot is streaming to Debezium (active in pg_replication_slots). Default true. */
  waitForStreaming?: boolean;
  /** Default 90_000. */
  timeoutMs?: number;
}

/** Where a MariaDB connector connects: a MariaDbServer (mariadb.ts) fits. */
export interface MariaDbConnection {
  host: string;
  port: number;
  user: string;
  password: string;
}

export interface MariaDbConnectorOptions {
  /** Connector name (unique per worker). */
  name: string;
  /** The server to capture, and the account Debezium reads it with (the harness's `cdc` user). */
  server: MariaDbConnection;
  /** Databases to capture (database.include.list). */
  databases: string[];
  /** Qualified table names, "shop.items" (table.include.list); default every table of `databases`. */
  tables?: string[];
  /** Row topics are <topicPrefix>.<database>.<table>; DDL goes to <topicPrefix>, the schema history to <topicPrefix>.schema-history. */
  topicPrefix: string;
  /** database.server.id, the replica id Debezium's binlog client uses: unique among the server's replicas. Default 5400 + n. */
  serverId?: number;
  /** 'initial' (existing rows as op "r" first) or 'no_data' (the schema only, then changes). Default 'no_data'. */
  snapshotMode?: 'initial' | 'no_data' | 'when_needed' | 'always' | 'initial_only' | 'recovery';
  /** include.schema.changes: DDL events on the <topicPrefix> topic. Default true. */
  includeSchemaChanges?: boolean;
  /** This connector's JsonConverter schemas.enable (keys and values), overriding the worker's. Default: the worker's. */
  schemasEnable?: boolean;
  /** Further connector properties, after the harness defaults (so they win). */
  settings?: Record<string, string | number | boolean>;
  /** Wait until Debezium's binlog client is connected (a new "Binlog Dump" thread on the server). Default true. */
  waitForStreaming?: boolean;
  /** Default 90_000. */
  timeoutMs?: number;
}

/** database.server.id of the next MariaDB connector without one: distinct within a test process. */
let nextMariaDbServerId = 5400;

export interface ConnectorStatus {
  name: string;
  connector: { state: string; worker_id: string; trace?: string };
  tasks: { id: number; state: string; worker_id: string; trace?: string }[];
}

/**
 * A standalone Kafka Connect worker: offsets in a file of its temp dir, a REST API on a free port, the
 * Debezium PostgreSQL and MariaDB connectors on its classpath. Connectors are created through the REST
 * API; one worker can serve connectors of both kinds.
 */
export class ConnectWorker {
  readonly dir: string;
  readonly logFile: string;
  readonly offsetsFile: string;
  #restPort = 0;
  #process: RunningServer | undefined;
  /** Set when the worker runs in a container (the Debezium image's Kafka, standalone as here). */
  #container: ServerContainer | undefined;
  readonly #inContainer: boolean;
  /** Set while the running JVM records a class data sharing archive (see cdsPlan). */
  #cdsRecording: { file: string; archive: string } | undefined;
  #destroyed = false;
  readonly #java: string;
  readonly #options: ConnectWorkerOptions;
  readonly #orphanGuard: OrphanGuard;
  /** Connector configs created so far, re-created after restart() (standalone keeps none across starts). */
  readonly #connectors = new Map<string, Record<string, string>>();

  private constructor(java: string | undefined, dir: string, options: ConnectWorkerOptions) {
    this.#java = java ?? '';
    this.#inContainer = java === undefined;
    this.dir = dir;
    this.logFile = join(dir, 'connect.log');
    this.offsetsFile = join(dir, 'connect.offsets');
    this.#options = options;
    this.#orphanGuard = new OrphanGuard(dir);
  }

  static async start(options: ConnectWorkerOptions): Promise<ConnectWorker> {
    const java = kafkaInContainers() ? undefined : requireJava();
    const worker = new ConnectWorker(java, makeTempDir('cdc-connect-'), options);
    try {
      writeFileSync(
        join(worker.dir, 'log4j.properties'),
        log4jProperties(['org.reflections', 'org.eclipse.jetty', 'org.glassfish', 'org.apache.kafka.clients', 'org.apache.kafka.common', 'org.apache.kafka.connect.runtime.isolation']),
      );
      return await retryOnPortInUse(async () => {
        worker.#restPort = await freePort();
        worker.#writeConfig();
        await worker.#startOnce();
        return worker;
      });
    } catch (err: unknown) {
      await worker.destroy().catch(() => undefined);
      throw err;
    }
  }

  get restPort(): number {
    return this.#restPort;
  }

  get restUrl(): string {
    return `http://127.0.0.1:${this.#restPort}`;
  }

  get running(): boolean {
    return this.#process?.running ?? false;
  }

  get pid(): number | undefined {
    return this.running ? this.#process?.pid : undefined;
  }

  /** One REST call; throws with the worker's message on a status >= 400. */
  async rest<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(`${this.restUrl}${path}`, {
      method,
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status}: ${text}`);
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }

  /** The Debezium properties the harness uses; exported through createPostgresConnector's result too. */
  postgresConnectorConfig(options: PostgresConnectorOptions): Record<string, string> {
    const pgOptions = this.#options.postgres;
    if (pgOptions === undefined) throw new Error('a PostgreSQL connector needs the worker started with the postgres option');
    const database = this.#inContainer ? this.#reachable(pgOptions.host, pgOptions.port, 'Postgres') : pgOptions;
    const config: Record<string, string | number | boolean> = {
      'connector.class': 'io.debezium.connector.postgresql.PostgresConnector',
      'tasks.max': 1,
      'database.hostname': database.host,
      'database.port': database.port,
      'database.user': pgOptions.user,
      'database.password': pgOptions.password ?? '',
      'database.dbname': options.database ?? pgOptions.database ?? 'postgres',
      'topic.prefix': options.topicPrefix,
      'plugin.name': 'pgoutput',
      'slot.name': options.slot,
      'publication.name': options.publication,
      'publication.autocreate.mode': options.publicationMode ?? 'filtered',
      'table.include.list': options.tables.map(escapeRegexTable).join(','),
      'snapshot.mode': options.snapshotMode ?? 'no_data',
      // NUMERIC/DECIMAL as their exact text ("12.50"). The worker decodes the connector's default
      // (precise: base64 two's complement) too; the equivalence test runs that one through `settings`.
      'decimal.handling.mode': 'string',
      // DATE: days since epoch (io.debezium.time.Date); TIME: microseconds (MicroTime); TIMESTAMP:
      // microseconds since epoch (MicroTimestamp); TIMESTAMPTZ: ISO-8601 text (ZonedTimestamp). No
      // precision is lost, unlike 'connect' (milliseconds).
      'time.precision.mode': 'adaptive_time_microseconds',
      // BYTEA as base64 text, spelt out rather than left to the converter's default.
      'binary.handling.mode': 'base64',
      // A delete is followed by a null-valued message with the same key (for log compaction).
      'tombstones.on.delete': true,
      // Debezium skips TRUNCATE by default ("t"): the cache invalidator needs them.
      'skipped.operations': 'none',
      // Keep the slot when the connector stops: a restarted worker resumes from it.
      'slot.drop.on.stop': false,
      // Fast feedback in tests: retry a lost connection quickly, report the slot's position often, hand
      // changes to Connect every 100 ms (default 500).
      'retriable.restart.connector.wait.ms': 1_000,
      'status.update.interval.ms': 1_000,
      'poll.interval.ms': 100,
    };
    return connectorProperties(config, options);
  }

  /**
   * Creates (or reconfigures) a Debezium PostgreSQL connector and waits until its task is RUNNING and,
   * unless waitForStreaming is false, until the slot is streaming to it: changes committed after this
   * resolves are captured.
   */
  async createPostgresConnector(options: PostgresConnectorOptions): Promise<ConnectorStatus> {
    const config = this.postgresConnectorConfig(options);
    const timeoutMs = options.timeoutMs ?? 90_000;
    const status = await this.#putConnector(options.name, config, timeoutMs);
    if (options.waitForStreaming ?? true) {
      await this.#waitForSlotActive(options.slot, config['database.dbname'] ?? 'postgres', timeoutMs);
    }
    return status;
  }

  /**
   * The Debezium MariaDB connector's properties the harness uses. Left at Debezium's defaults, which the
   * worker must decode: decimal.handling.mode=precise (DECIMAL as org.apache.kafka.connect.data.Decimal,
   * base64 two's complement bytes), time.precision.mode=adaptive_time_microseconds (DATE days, TIME
   * MicroTime, DATETIME Timestamp/MicroTimestamp by precision, TIMESTAMP ZonedTimestamp text),
   * bigint.unsigned.handling.mode=long (BIGINT UNSIGNED as int64: values above 2^63-1 wrap to negative),
   * binary.handling.mode=bytes (base64 text in JSON). What each column type becomes, schema included:
   * test/fixtures/debezium-mariadb/types.json (test/harness/mariadb.test.ts writes it).
   */
  mariaDbConnectorConfig(options: MariaDbConnectorOptions): Record<string, string> {
    const server = this.#inContainer ? this.#reachable(options.server.host, options.server.port, 'MariaDB') : options.server;
    const config: Record<string, string | number | boolean> = {
      'connector.class': 'io.debezium.connector.mariadb.MariaDbConnector',
      'tasks.max': 1,
      'database.hostname': server.host,
      'database.port': server.port,
      'database.user': options.server.user,
      'database.password': options.server.password,
      'database.server.id': options.serverId ?? nextMariaDbServerId++,
      'topic.prefix': options.topicPrefix,
      'database.include.list': options.databases.map(escapeRegexTable).join(','),
      ...(options.tables === undefined ? {} : { 'table.include.list': options.tables.map(escapeRegexTable).join(',') }),
      'snapshot.mode': options.snapshotMode ?? 'no_data',
      // DDL is read from the binlog into a history kept in Kafka: a restarted connector rebuilds its
      // table schemas from it.
      'schema.history.internal.kafka.bootstrap.servers': this.#connectorBootstrap(),
      'schema.history.internal.kafka.topic': `${options.topicPrefix}.schema-history`,
      'include.schema.changes': options.includeSchemaChanges ?? true,
      // The harness's server has no TLS. The connector's default, 'preferred', is passed on as is to the
      // MariaDB JDBC driver (3.2.0 in Debezium 3.0.1), which knows no such SslMode: validation fails with
      // "Unable to connect: error parsing url : Wrong argument value 'preferred' for SslMode".
      'database.ssl.mode': 'disabled',
      // No time zone setting: the harness's server runs in UTC (mariadb.ts: --default-time-zone=+00:00), and
      // the JDBC session of the snapshot follows the server's zone by default (database.timezone=auto; the
      // MySQL connector's database.connectionTimeZone means nothing to the MariaDB driver).
      // A delete is followed by a null-valued message with the same key (for log compaction).
      'tombstones.on.delete': true,
      // Debezium skips TRUNCATE by default ("t"): the cache invalidator needs them.
      'skipped.operations': 'none',
      // Fast feedback in tests: retry a lost connection quickly, hand changes to Connect every 100 ms.
      'retriable.restart.connector.wait.ms': 1_000,
      'poll.interval.ms': 100,
    };
    return connectorProperties(config, options);
  }

  /**
   * Creates (or reconfigures) a Debezium MariaDB connector and waits until its task is RUNNING and, unless
   * waitForStreaming is false, until its binlog client is connected to the server: changes committed after
   * this resolves are captured.
   */
  async createMariaDbConnector(options: MariaDbConnectorOptions): Promise<ConnectorStatus> {
    const config = this.mariaDbConnectorConfig(options);
    const waitForStreaming = options.waitForStreaming ?? true;
    // The binlog dump threads before: the connector's is the one that appears after (threads of other
    // connectors on the same server, with the same user, are told apart that way).
    const before = waitForStreaming ? await binlogDumpThreads(options.server) : new Set<number>();
    const timeoutMs = options.timeoutMs ?? 90_000;
    const status = await this.#putConnector(options.name, config, timeoutMs);
    if (waitForStreaming) await this.#waitForBinlogDump(options.name, options.server, before, timeoutMs);
    return status;
  }

  /** Creates or reconfigures a connector (kept for restart()) and waits until it runs. */
  async #putConnector(name: string, config: Record<string, string>, timeoutMs: number): Promise<ConnectorStatus> {
    this.#connectors.set(name, config);
    await this.rest('PUT', `/connectors/${encodeURIComponent(name)}/config`, config);
    return await this.waitForConnectorRunning(name, timeoutMs);
  }

  /** Waits until the connector and all its tasks are RUNNING; fails at once on FAILED, with the trace. */
  async waitForConnectorRunning(name: string, timeoutMs = 90_000): Promise<ConnectorStatus> {
    try {
      return await waitFor(
        async () => {
          if (!this.running) throw new AbortWaitError(`kafka connect exited (${this.#describeExit()})`);
          const status = await this.rest<ConnectorStatus>('GET', `/connectors/${encodeURIComponent(name)}/status`);
          const failed = [status.connector, ...status.tasks].find((s) => s.state === 'FAILED');
          if (failed !== undefined) throw new AbortWaitError(`connector ${name} FAILED: ${failed.trace ?? '(no trace)'}`);
          return status.connector.state === 'RUNNING' && status.tasks.length > 0 && status.tasks.every((t) => t.state === 'RUNNING')
            ? status
            : undefined;
        },
        { timeoutMs, intervalMs: 200, message: `connector ${name} to be RUNNING` },
      );
    } catch (err: unknown) {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the connect log ---\n${logTail(this.logFile, 40)}`, { cause: err });
    }
  }

  async connectorStatus(name: string): Promise<ConnectorStatus> {
    return await this.rest<ConnectorStatus>('GET', `/connectors/${encodeURIComponent(name)}/status`);
  }

  /**
   * Deletes a connector. A PostgreSQL connector's slot stays (drop it with pg_drop_replication_slot once
   * inactive); a MariaDB connector's schema history topic stays.
   */
  async deleteConnector(name: string): Promise<void> {
    this.#connectors.delete(name);
    await this.rest('DELETE', `/connectors/${encodeURIComponent(name)}`);
  }

  /** Graceful shutdown (SIGTERM): connectors stop, offsets are flushed to the offsets file. */
  async stop(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGTERM');
    await proc.waitExit(60_000);
  }

  /** SIGKILL, and waits until the JVM is gone. Offsets not yet flushed are lost (Debezium re-sends). */
  async kill(): Promise<void> {
    const proc = this.#process;
    if (proc === undefined || !proc.running) return;
    await proc.signal('SIGKILL');
    await proc.exited;
  }

  /** The container's id when the worker runs in one. */
  get containerId(): string | undefined {
    return this.#container?.id;
  }

  /**
   * A server of this machine's 127.0.0.1 as the worker's container reaches it: through the network of
   * the test process's containers. A server outside them (one started from binaries) it cannot reach.
   */
  #reachable(host: string, port: number, what: string): { host: string; port: number } {
    const local = host === '127.0.0.1' || host === 'localhost';
    const address = local ? addressInNetwork(port) : { host, port };
    if (address === undefined) {
      throw new Error(
        `Kafka Connect runs in a container here and cannot reach ${what} at ${host}:${port}, which is not one of ` +
          `the test's containers (start ${what} through the harness, which runs it in a container too)`,
      );
    }
    return address;
  }

  /**
   * Starts the worker again on the same port and offsets file (stopping it first if it runs), and
   * re-creates the connectors it had, which resume from their stored offsets and slots.
   */
  async restart(): Promise<void> {
    if (this.#destroyed) throw new Error('restart() after destroy()');
    await this.stop();
    await this.#startOnce();
    for (const [name, config] of this.#connectors) {
      await this.rest('PUT', `/connectors/${encodeURIComponent(name)}/config`, config);
      await this.waitForConnectorRunning(name);
    }
  }

  /** Kills the worker and removes its temp dir. Safe to call twice. Slots it created stay in Postgres. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    try {
      // A JVM recording its class data sharing archive writes it on a clean exit only.
      if (this.#cdsRecording !== undefined) await this.stop();
      if (this.#container !== undefined) await this.#container.destroy();
      else await this.kill();
    } finally {
      this.#orphanGuard.release();
      removeDir(this.dir);
    }
  }

  #writeConfig(): void {
    const schemas = this.#options.schemasEnable ?? true;
    const settings: Record<string, string | number | boolean> = {
      'bootstrap.servers': this.#options.bootstrap,
      'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
      'key.converter.schemas.enable': schemas,
      'value.converter.schemas.enable': schemas,
      'offset.storage.file.filename': this.offsetsFile,
      'offset.flush.interval.ms': 1_000,
      listeners: `http://127.0.0.1:${this.#restPort}`,
      'rest.advertised.host.name': '127.0.0.1',
      'rest.advertised.port': this.#restPort,
      // Every plugin is on the classpath; ServiceLoader manifests find them without scanning every jar.
      'plugin.discovery': 'service_load',
      // Topics are created by the broker on first write (auto.create.topics.enable), one partition.
      'topic.creation.enable': true,
      'task.shutdown.graceful.timeout.ms': 5_000,
      ...(this.#inContainer
        ? {
            'bootstrap.servers': this.#connectorBootstrap(),
            'offset.storage.file.filename': CONTAINER_CONNECT_OFFSETS,
            listeners: `http://0.0.0.0:${CONTAINER_CONNECT_PORT}`,
            // The image keeps Debezium's connectors as plugins, off the classpath.
            'plugin.path': '/kafka/connect',
          }
        : {}),
      ...this.#options.settings,
    };
    writeFileSync(join(this.dir, 'worker.properties'), properties(settings));
  }

  async #launch(): Promise<RunningServer> {
    if (this.#inContainer) return await this.#launchContainer();
    const cp = classpath('connect');
    const cds = cdsPlan('connect', this.#java, cp, this.dir, this.#cdsRecording === undefined);
    const args = [
      ...JVM_OPTIONS,
      ...cds.args,
      `-Dlog4j.configuration=file:${join(this.dir, 'log4j.properties')}`,
      `-Djava.io.tmpdir=${this.dir}`,
      '-cp',
      cp,
      'org.apache.kafka.connect.cli.ConnectStandalone',
      join(this.dir, 'worker.properties'),
    ];
    const proc = await ServerProcess.spawn(this.#java, args, { cwd: this.dir, logFile: this.logFile, env: javaEnv(this.dir) });
    this.#cdsRecording = cds.recording;
    this.#orphanGuard.track(proc.pid);
    void proc.exited.then((status) => {
      if (this.#process === proc) this.#orphanGuard.track(undefined);
      if (cds.recording !== undefined) {
        publishCdsArchive(cds.recording, status);
        if (this.#cdsRecording === cds.recording) this.#cdsRecording = undefined;
      }
    });
    return proc;
  }

  /** The Debezium image's Kafka runs Connect standalone, on the harness's worker config. */
  async #launchContainer(): Promise<RunningServer> {
    if (this.#container !== undefined) return await this.#container.startAgain();
    const { ServerContainer } = await import('./containers.js');
    const config = '/tmp/harness-worker.properties';
    try {
      this.#container = await ServerContainer.start({
        image: IMAGES.connect(),
        command: ['/kafka/bin/connect-standalone.sh', config],
        env: { KAFKA_HEAP_OPTS: '-Xms64m -Xmx256m' },
        containerPort: CONTAINER_CONNECT_PORT,
        hostPort: this.#restPort,
        logFile: this.logFile,
        files: { [config]: readFileSync(join(this.dir, 'worker.properties'), 'utf8') },
        alias: `connect-${this.#restPort}`,
      });
    } catch (err: unknown) {
      if (/port is already allocated|address already in use/i.test(String(err))) throw new PortInUseError('kafka connect');
      throw err;
    }
    const run = this.#container.current;
    if (run === undefined) throw new Error('the kafka connect container did not start');
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
            if (/address already in use/i.test(readLogFrom(this.logFile, logStart))) throw new PortInUseError('kafka connect');
            throw new AbortWaitError(`kafka connect exited during start (${describeExit(proc)})`);
          }
          // The REST server answers / before the worker is ready; /connectors only once it has started.
          await this.rest('GET', '/connectors');
          return true;
        },
        { timeoutMs: this.#options.startTimeoutMs ?? 90_000, intervalMs: 200, message: `kafka connect REST API on ${this.restUrl}` },
      );
    } catch (err: unknown) {
      await proc.signal('SIGKILL');
      await proc.exited;
      if (err instanceof PortInUseError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the connect log ---\n${logTail(this.logFile, 40)}`, { cause: err });
    }
  }

  /** The broker as the worker reaches it: its own clients, and the MariaDB schema history's, run inside it. */
  #connectorBootstrap(): string {
    if (!this.#inContainer) return this.#options.bootstrap;
    return this.#options.bootstrap
      .split(',')
      .map((server) => {
        const at = server.lastIndexOf(':');
        const address = this.#reachable(server.slice(0, at), Number(server.slice(at + 1)), 'the Kafka broker');
        return `${address.host}:${address.port}`;
      })
      .join(',');
  }

  /** Waits until a binlog dump thread not in `before` runs on the server, while the connector is not FAILED. */
  async #waitForBinlogDump(name: string, server: MariaDbConnection, before: Set<number>, timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        if (!this.running) throw new AbortWaitError(`kafka connect exited (${this.#describeExit()})`);
        const threads = await binlogDumpThreads(server);
        if ([...threads].some((id) => !before.has(id))) return true;
        const status = await this.connectorStatus(name);
        const failed = [status.connector, ...status.tasks].find((s) => s.state === 'FAILED');
        if (failed !== undefined) throw new AbortWaitError(`connector ${name} FAILED: ${failed.trace ?? '(no trace)'}`);
        return false;
      },
      { timeoutMs, intervalMs: 200, message: `connector ${name}'s binlog client to connect to MariaDB at ${server.host}:${server.port}` },
    ).catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the connect log ---\n${logTail(this.logFile, 40)}`, { cause: err });
    });
  }

  async #waitForSlotActive(slot: string, database: string, timeoutMs: number): Promise<void> {
    const postgres = this.#options.postgres;
    if (postgres === undefined) throw new Error('a PostgreSQL connector needs the worker started with the postgres option');
    const { host, port, user, password } = postgres;
    await waitFor(
      async () => {
        if (!this.running) throw new AbortWaitError(`kafka connect exited (${this.#describeExit()})`);
        const client = new pg.Client({ host, port, user, password, database });
        await client.connect();
        try {
          const result = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
          return result.rows[0]?.active === true;
        } finally {
          await client.end().catch(() => undefined);
        }
      },
      { timeoutMs, intervalMs: 200, message: `replication slot ${slot} to be streaming to Debezium` },
    ).catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      throw new Error(`${message}\n--- last lines of the connect log ---\n${logTail(this.logFile, 40)}`, { cause: err });
    });
  }

  #describeExit(): string {
    return this.#process === undefined ? 'never started' : describeExit(this.#process);
  }
}

/** The ids of the server's binlog dump threads (replicas and Debezium's binlog clients) of `server.user`. */
async function binlogDumpThreads(server: MariaDbConnection): Promise<Set<number>> {
  const connection = await mysql.createConnection({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    connectTimeout: 5_000,
  });
  connection.on('error', () => undefined);
  try {
    const [rows] = await connection.query<RowDataPacket[]>(
      "SELECT ID AS id FROM information_schema.PROCESSLIST WHERE COMMAND = 'Binlog Dump' AND USER = ?",
      [server.user],
    );
    return new Set(rows.map((row) => Number(row.id)));
  } finally {
    await connection.end().catch(() => connection.destroy());
  }
}

/**
 * A connector's properties as Connect takes them (strings), with its own JsonConverter settings when
 * `schemasEnable` is given (overriding the worker's) and the caller's `settings` last, so that they win.
 */
function connectorProperties(
  config: Record<string, string | number | boolean>,
  options: { schemasEnable?: boolean | undefined; settings?: Record<string, string | number | boolean> | undefined },
): Record<string, string> {
  const all: Record<string, string | number | boolean> = {
    ...config,
    ...(options.schemasEnable === undefined
      ? {}
      : {
          'key.converter': 'org.apache.kafka.connect.json.JsonConverter',
          'value.converter': 'org.apache.kafka.connect.json.JsonConverter',
          'key.converter.schemas.enable': options.schemasEnable,
          'value.converter.schemas.enable': options.schemasEnable,
        }),
    ...options.settings,
  };
  return Object.fromEntries(Object.entries(all).map(([key, value]) => [key, String(value)]));
}

/**
 * table.include.list (and database.include.list) entries are regular expressions: "public.items" must not
 * also match "public_items".
 */
function escapeRegexTable(table: string): string {
  return table.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

// --- one broker and one worker per test file ---

let sharedBrokerPromise: Promise<KafkaBroker> | undefined;
let sharedWorkerPromise: Promise<ConnectWorker> | undefined;

/** The test file's broker, started on the first call and destroyed after the file's last test. */
export async function sharedKafkaBroker(options?: KafkaBrokerOptions): Promise<KafkaBroker> {
  sharedBrokerPromise ??= KafkaBroker.start(options);
  return await sharedBrokerPromise;
}

/**
 * The test file's Connect worker, on the shared broker unless `bootstrap` is given; started on the first
 * call (options count only then) and destroyed after the file's last test. One worker serves every
 * connector of the file; the schemasEnable of createPostgresConnector and createMariaDbConnector picks the
 * message shape per connector. `postgres` may be left out by a file whose connectors are all MariaDB ones.
 */
export async function sharedConnectWorker(
  options: Omit<ConnectWorkerOptions, 'bootstrap'> & { bootstrap?: string } = {},
): Promise<ConnectWorker> {
  sharedWorkerPromise ??= (async () => {
    const bootstrap = options.bootstrap ?? (await sharedKafkaBroker()).bootstrap();
    return await ConnectWorker.start({ ...options, bootstrap });
  })();
  return await sharedWorkerPromise;
}

async function destroyShared(): Promise<void> {
  const worker = sharedWorkerPromise;
  const broker = sharedBrokerPromise;
  sharedWorkerPromise = undefined;
  sharedBrokerPromise = undefined;
  // A start that failed has cleaned up after itself; its error was reported to the test that awaited it.
  // The worker first: one whose broker is gone spends its shutdown retrying it.
  try {
    await (await worker?.catch(() => undefined))?.destroy();
  } finally {
    await (await broker?.catch(() => undefined))?.destroy();
  }
}

// Registered when a test file imports this module (see services.ts). Outside vitest (bench/debezium-bench.ts)
// there is no suite to attach it to: there the caller starts and destroys its own broker.
if (process.env.VITEST !== undefined) {
  const { afterAll } = await import('vitest');
  afterAll(destroyShared, 120_000);
}
