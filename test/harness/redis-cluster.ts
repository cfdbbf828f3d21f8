// A throwaway Redis Cluster for integration tests: redis-server processes with --cluster-enabled on
// free ports (the cluster bus on a free port of its own, --cluster-port), joined and given slots with
// CLUSTER commands, and controls for the faults a cluster sink must survive: a slot migrated while
// keys are written, a replica promoted (CLUSTER FAILOVER), a master killed.
import { Redis } from 'ioredis';
import { CLUSTER_SLOTS as SLOTS } from '../../src/lib/cluster-slot.js';
import { freePort } from './free-port.js';
import { RedisServer } from './redis.js';
import { waitFor } from './wait-for.js';

export interface RedisClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a master may be unreachable before its replica takes over. */
  nodeTimeoutMs?: number;
}

export interface ClusterNode {
  server: RedisServer;
  busPort: number;
}

export class RedisCluster {
  private constructor(readonly nodes: ClusterNode[]) {}

  /** Starts and joins the nodes: masters share the slots evenly, each has its replicas. */
  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    const masters = options.masters ?? 3;
    const replicas = options.replicasPerMaster ?? 1;
    const nodes: ClusterNode[] = [];
    const cluster = new RedisCluster(nodes);
    try {
      for (let i = 0; i < masters * (1 + replicas); i++) {
        const busPort = await freePort();
        const server = await RedisServer.start({
          args: [
            '--cluster-enabled', 'yes',
            '--cluster-config-file', 'nodes.conf',
            '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 2_000),
            '--cluster-port', String(busPort),
            // A replica answers for its master after a failover without waiting for a manual step.
            '--cluster-replica-no-failover', 'no',
            '--cluster-require-full-coverage', 'yes',
          ],
        });
        nodes.push({ server, busPort });
      }
      await cluster.join(masters);
      return cluster;
    } catch (err) {
      await cluster.destroy();
      throw err;
    }
  }

  /** Seed URLs for a cluster client: every node. */
  seeds(): string[] {
    return this.nodes.map((n) => n.server.url());
  }

  /** A plain connection to one node (closed by the caller). */
  connect(node: ClusterNode): Redis {
    return new Redis(node.server.port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 });
  }

  private async join(masters: number): Promise<void> {
    const clients = this.nodes.map((n) => this.connect(n));
    try {
      const ids = await Promise.all(clients.map(async (c) => (await c.call('CLUSTER', 'MYID')) as string));
      for (let i = 0; i < clients.length; i++) await clients[i]!.call('CLUSTER', 'SET-CONFIG-EPOCH', String(i + 1));
      for (let i = 0; i < masters; i++) {
        const first = Math.floor((i * SLOTS) / masters);
        const last = Math.floor(((i + 1) * SLOTS) / masters) - 1;
        await clients[i]!.call('CLUSTER', 'ADDSLOTSRANGE', String(first), String(last));
      }
      for (let i = 1; i < this.nodes.length; i++) {
        const n = this.nodes[i]!;
        await clients[0]!.call('CLUSTER', 'MEET', '127.0.0.1', String(n.server.port), String(n.busPort));
      }
      await waitFor(
        async () => {
          for (const c of clients) {
            const known = ((await c.call('CLUSTER', 'NODES')) as string).trim().split('\n');
            if (known.length < this.nodes.length || known.some((line) => line.includes('handshake'))) return false;
          }
          return true;
        },
        { timeoutMs: 30_000, intervalMs: 50, message: 'cluster nodes to know each other' },
      );
      for (let i = masters; i < this.nodes.length; i++) {
        const master = (i - masters) % masters;
        await clients[i]!.call('CLUSTER', 'REPLICATE', ids[master]!);
      }
      await this.waitHealthy();
    } finally {
      for (const c of clients) c.disconnect();
    }
  }

  /** Every node reports cluster_state:ok and every replica is in sync with its master. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    await waitFor(
      async () => {
        for (const node of this.nodes) {
          if (!node.server.running) continue;
          const c = this.connect(node);
          try {
            const info = (await c.call('CLUSTER', 'INFO')) as string;
            if (!info.includes('cluster_state:ok')) return false;
            const replication = await c.info('replication');
            if (replication.includes('role:slave') && !replication.includes('master_link_status:up')) return false;
          } catch {
            return false;
          } finally {
            c.disconnect();
          }
        }
        return true;
      },
      { timeoutMs, intervalMs: 100, message: 'the cluster to be healthy' },
    );
  }

  /** The node that serves a slot now, as one node that is up sees it. */
  async ownerOf(slot: number): Promise<ClusterNode> {
    const view = await this.view();
    const owner = view.find((n) => n.master && n.slots.some(([a, b]) => slot >= a && slot <= b));
    if (owner === undefined) throw new Error(`no node serves slot ${slot}`);
    return owner.node;
  }

  /** The masters that are up, and their replicas. */
  async masters(): Promise<{ node: ClusterNode; replicas: ClusterNode[] }[]> {
    const view = await this.view();
    return view
      .filter((n) => n.master && n.node.server.running)
      .map((m) => ({ node: m.node, replicas: view.filter((r) => !r.master && r.masterId === m.id && r.node.server.running).map((r) => r.node) }));
  }

  private async view(): Promise<{ node: ClusterNode; id: string; master: boolean; masterId: string | null; slots: [number, number][] }[]> {
    const up = this.nodes.find((n) => n.server.running);
    if (up === undefined) throw new Error('no node is running');
    const c = this.connect(up);
    try {
      const lines = ((await c.call('CLUSTER', 'NODES')) as string).trim().split('\n');
      return lines.map((line) => {
        const f = line.split(' ');
        const port = Number(f[1]!.split('@')[0]!.split(':')[1]);
        const node = this.nodes.find((n) => n.server.port === port);
        if (node === undefined) throw new Error(`unknown node in CLUSTER NODES: ${line}`);
        const flags = f[2]!.split(',');
        const slots: [number, number][] = f
          .slice(8)
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [a, b] = s.split('-');
            return [Number(a), Number(b ?? a)];
          });
        return { node, id: f[0]!, master: flags.includes('master') && !flags.includes('fail'), masterId: f[3] === '-' ? null : f[3]!, slots };
      });
    } finally {
      c.disconnect();
    }
  }

  /**
   * Moves one slot with its keys from its owner to `to`, the way redis-cli --cluster reshard does:
   * IMPORTING/MIGRATING, MIGRATE in steps (clients meanwhile get ASK for keys already moved), then
   * the new owner announced to every master.
   */
  async migrateSlot(slot: number, to: ClusterNode, onStep?: () => Promise<void>): Promise<void> {
    const from = await this.ownerOf(slot);
    if (from === to) return;
    const src = this.connect(from);
    const dst = this.connect(to);
    try {
      const srcId = (await src.call('CLUSTER', 'MYID')) as string;
      const dstId = (await dst.call('CLUSTER', 'MYID')) as string;
      await dst.call('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', srcId);
      await src.call('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', dstId);
      for (;;) {
        const keys = (await src.call('CLUSTER', 'GETKEYSINSLOT', String(slot), '10')) as string[];
        if (keys.length === 0) break;
        await src.call('MIGRATE', '127.0.0.1', String(to.server.port), '', '0', '5000', 'KEYS', ...keys);
        await onStep?.();
      }
      for (const m of await this.masters()) {
        const c = this.connect(m.node);
        try {
          await c.call('CLUSTER', 'SETSLOT', String(slot), 'NODE', dstId);
        } finally {
          c.disconnect();
        }
      }
    } finally {
      src.disconnect();
      dst.disconnect();
    }
  }

  /** Promotes a replica of `master` with CLUSTER FAILOVER (no writes lost); returns the new master. */
  async failover(master: ClusterNode): Promise<ClusterNode> {
    const entry = (await this.masters()).find((m) => m.node === master);
    const replica = entry?.replicas[0];
    if (replica === undefined) throw new Error('the master has no replica to promote');
    const c = this.connect(replica);
    try {
      await c.call('CLUSTER', 'FAILOVER');
      await waitFor(async () => (await c.info('replication')).includes('role:master'), { timeoutMs: 30_000, intervalMs: 50, message: 'the replica to become master' });
    } finally {
      c.disconnect();
    }
    await this.waitHealthy();
    return replica;
  }

  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.server.destroy().catch(() => undefined)));
  }
}
