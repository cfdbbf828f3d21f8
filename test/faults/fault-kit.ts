// Shared plumbing of the fault scenarios that run the built binary: a config of default settings
// (plus what a scenario needs), the worker's HTTP port from its log, /readyz and /status, its RSS,
// and the walsender streaming a slot.
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PostgresServer } from '../harness/postgres.js';
import { waitFor } from '../harness/wait-for.js';
import { spawnCli, type WorkerProcess } from '../e2e/worker-process.js';

export interface FaultConfig {
  url: string;
  slot: string;
  publication: string;
  redisUrl: string;
  /** Seed URLs of a Redis Cluster: written as redis.cluster instead of redis.url. */
  redisCluster?: readonly string[];
  /** Extra lines of the redis: block (indented by two spaces). */
  redisExtra?: string;
  prefix: string;
  /** The `rules:` list items, as YAML text. */
  rules: string;
  notifyChannel?: string;
  /** Extra top-level YAML (e.g. a batch: block). No http: block: port 0 is always set. */
  extra?: string;
}

/** Writes a config (defaults everywhere but what is given, and http.port 0) and its mapping; returns the config path. */
export function writeFaultConfig(c: FaultConfig): string {
  const dir = mkdtempSync(join(tmpdir(), 'cdc-fault-'));
  mkdirSync(join(dir, 'mappings'));
  writeFileSync(join(dir, 'mappings', 'rules.yaml'), `rules:\n${c.rules}\n`);
  const notify = c.notifyChannel === undefined ? '' : `  notifyChannel: "${c.notifyChannel}"\n`;
  const path = join(dir, 'cdc-invalidator.yaml');
  writeFileSync(
    path,
    `source:\n  kind: postgres\n  url: "${c.url}"\n  slot: ${c.slot}\n  publication: ${c.publication}\n` +
      `redis:\n${c.redisCluster === undefined ? `  url: "${c.redisUrl}"\n` : `  cluster: [${c.redisCluster.map((u) => `"${u}"`).join(', ')}]\n`}` +
      `  keyPrefix: "${c.prefix}"\n${notify}${c.redisExtra ?? ''}` +
      `mappings: ./mappings\nhttp:\n  port: 0\n${c.extra ?? ''}`,
  );
  return path;
}

export interface RunningWorker extends WorkerProcess {
  port: number;
}

/** Spawns `node dist/cli.js run` and waits for its HTTP port (from the 'http listening' log line). */
export async function startWorker(configPath: string): Promise<RunningWorker> {
  const proc = spawnCli(['run', '--config', configPath]);
  const port = await waitFor(
    () => {
      for (const line of proc.output().split('\n')) {
        if (!line.includes('"http listening"')) continue;
        return (JSON.parse(line) as { port: number }).port;
      }
      if (proc.child.exitCode !== null) throw new Error(`worker exited early:\n${proc.output()}`);
      return undefined;
    },
    { timeoutMs: 30_000, message: 'the worker to listen for http' },
  );
  return Object.assign(proc, { port });
}

export function alive(w: WorkerProcess | undefined): w is WorkerProcess {
  return w !== undefined && w.child.exitCode === null && w.child.signalCode === null;
}

export async function killWorker(w: WorkerProcess | undefined, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  if (!alive(w)) return;
  w.child.kill(signal);
  await w.exited;
}

/** One GET on 127.0.0.1 with a short timeout; the status code and the parsed JSON body. */
export async function httpGet(port: number, path: string, timeoutMs = 2_000): Promise<{ status: number; body: any }> {
  return await new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON (metrics)
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Resident set size of a process in KiB (VmRSS), or null once it is gone. */
export function rssKb(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** The walsender streaming a slot, from both views Postgres offers. */
export async function slotSender(pg: PostgresServer, slot: string): Promise<{ activePid: number | null; senders: number }> {
  const [row] = await pg.query<{ active_pid: number | null; senders: string }>(
    `SELECT s.active_pid,
            (SELECT count(*) FROM pg_stat_replication r WHERE r.pid = s.active_pid)::text AS senders
       FROM pg_replication_slots s WHERE s.slot_name = $1`,
    [slot],
  );
  return { activePid: row?.active_pid ?? null, senders: Number(row?.senders ?? 0) };
}

/** The JSON log lines of a worker whose msg is exactly `msg`. */
export function logLines(w: WorkerProcess, msg: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of w.output().split('\n')) {
    if (!line.includes(`"${msg}"`)) continue;
    try {
      const parsed = JSON.parse(line) as Record<string, unknown>;
      if (parsed['msg'] === msg) out.push(parsed);
    } catch {
      // not a JSON line
    }
  }
  return out;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function lsnToBigInt(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

/** The slot's confirmed_flush_lsn as a number, or null when it has none. */
export async function confirmedFlush(pg: PostgresServer, slot: string): Promise<bigint | null> {
  const [row] = await pg.query<{ c: string | null }>(
    `SELECT (confirmed_flush_lsn - '0/0')::text AS c FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  return row?.c == null ? null : BigInt(row.c);
}
