// A throwaway Redis Sentinel set for integration tests: a primary, its replicas and three sentinels
// (redis-server --sentinel with a config file of their own), all on free ports, and a failover on
// request (SENTINEL FAILOVER), as an operator or an orchestrator would trigger one.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from './free-port.js';
import { findRedisServer, missingRedisMessage, RedisServer } from './redis.js';
import { makeTempDir, removeDir, ServerProcess } from './server-process.js';
import { waitFor } from './wait-for.js';

export const SENTINEL_MASTER_NAME = 'cdcmaster';

export class RedisSentinelSet {
  private constructor(
    readonly servers: RedisServer[],
    private readonly sentinels: { process: ServerProcess; port: number; dir: string }[],
  ) {}

  static async start(options: { replicas?: number; downAfterMs?: number } = {}): Promise<RedisSentinelSet> {
    const binary = findRedisServer();
    if (binary === undefined) throw new Error(missingRedisMessage());
    const servers: RedisServer[] = [];
    const sentinels: { process: ServerProcess; port: number; dir: string }[] = [];
    const set = new RedisSentinelSet(servers, sentinels);
    try {
      const primary = await RedisServer.start();
      servers.push(primary);
      for (let i = 0; i < (options.replicas ?? 1); i++) {
        servers.push(await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] }));
      }
      await set.waitReplicasInSync(primary);
      for (let i = 0; i < 3; i++) {
        const port = await freePort();
        const dir = makeTempDir('cdc-sentinel-');
        const conf = join(dir, 'sentinel.conf');
        writeFileSync(
          conf,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            'daemonize no',
            `dir ${dir}`,
            `sentinel monitor ${SENTINEL_MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${SENTINEL_MASTER_NAME} ${options.downAfterMs ?? 1_000}`,
            `sentinel failover-timeout ${SENTINEL_MASTER_NAME} 10000`,
            `sentinel parallel-syncs ${SENTINEL_MASTER_NAME} 1`,
            '',
          ].join('\n'),
        );
        const process = await ServerProcess.spawn(binary, [conf, '--sentinel'], { cwd: dir, logFile: join(dir, 'sentinel.log') });
        sentinels.push({ process, port, dir });
      }
      // Every sentinel knows the primary and its replicas, and the others.
      await waitFor(
        async () => {
          for (const s of sentinels) {
            const c = new Redis(s.port, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null, lazyConnect: true });
            c.on('error', () => undefined);
            try {
              await c.connect();
              const master = (await c.call('SENTINEL', 'MASTER', SENTINEL_MASTER_NAME)) as string[];
              const field = (name: string) => master[master.indexOf(name) + 1];
              if (Number(field('num-other-sentinels')) < 2 || Number(field('num-slaves')) < servers.length - 1) return false;
            } catch {
              return false;
            } finally {
              c.disconnect();
            }
          }
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: 'the sentinels to know the set' },
      );
      return set;
    } catch (err) {
      await set.destroy();
      throw err;
    }
  }

  /** Sentinel URLs, for redis.sentinel.nodes. */
  sentinelUrls(): string[] {
    return this.sentinels.map((s) => `redis://127.0.0.1:${s.port}`);
  }

  /** The server the sentinels name as primary now. */
  async primary(): Promise<RedisServer> {
    const c = new Redis(this.sentinels[0]!.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      const [, port] = (await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', SENTINEL_MASTER_NAME)) as string[];
      const server = this.servers.find((s) => s.port === Number(port));
      if (server === undefined) throw new Error(`the sentinels name an unknown primary on port ${port}`);
      return server;
    } finally {
      c.disconnect();
    }
  }

  /**
   * SENTINEL FAILOVER: a replica is promoted; the old primary is told to replicate from it only
   * later, and accepts writes until then. Resolves once the sentinels name the new primary and it
   * answers as one.
   */
  async failover(): Promise<RedisServer> {
    const before = await this.primary();
    const c = new Redis(this.sentinels[0]!.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      await c.call('SENTINEL', 'FAILOVER', SENTINEL_MASTER_NAME);
    } finally {
      c.disconnect();
    }
    let after: RedisServer | undefined;
    await waitFor(
      async () => {
        after = await this.primary();
        return after !== before;
      },
      { timeoutMs: 30_000, intervalMs: 50, message: 'the sentinels to name a new primary' },
    );
    return after!;
  }

  /** Until every replica of `primary` reports its link up. */
  async waitReplicasInSync(primary: RedisServer): Promise<void> {
    const c = new Redis(primary.port, '127.0.0.1', { maxRetriesPerRequest: 1 });
    try {
      await waitFor(
        async () => {
          const info = await c.info('replication');
          const connected = Number(/connected_slaves:(\d+)/.exec(info)?.[1] ?? 0);
          return connected >= this.servers.length - 1 && !/state=(wait_bgsave|send_bulk)/.test(info);
        },
        { timeoutMs: 30_000, intervalMs: 50, message: 'the replicas to be in sync' },
      );
    } finally {
      c.disconnect();
    }
  }

  async destroy(): Promise<void> {
    for (const s of this.sentinels) {
      if (s.process.running) {
        s.process.signal('SIGKILL');
        await s.process.exited;
      }
      removeDir(s.dir);
    }
    await Promise.all(this.servers.map((s) => s.destroy().catch(() => undefined)));
  }
}
