// Runs the worker as users do, `node dist/cli.js run --config FILE`, in a child process: its peak
// RSS is then the worker's alone (VmHWM from /proc), and a CPU profile covers only the worker.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { procStats, type ProcStats } from './proc-stats.js';

/** bench/build/bench/worker-process.js → <project>/dist/cli.js */
export const CLI = fileURLToPath(new URL('../../../dist/cli.js', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  /** performance.now() when the worker logged "replication started", and its /proc sample then. */
  replicationStarted: Promise<{ at: number; stats: ProcStats | undefined }>;
  /** Resolves with the exit code (or signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** The last lines the worker wrote, for error messages. */
  outputTail(): string;
  /** Peak and current resident set size in kB, from /proc/<pid>/status; undefined once it exited. */
  memory(): { peakKb: number; rssKb: number } | undefined;
  /** SIGTERM and wait for the exit (SIGKILL after `timeoutMs`). */
  stop(timeoutMs?: number): Promise<number | string>;
}

export function spawnWorker(configPath: string, options: { cpuProfileDir?: string } = {}): WorkerProcess {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (npm run bench does)`);
  // BENCH_WORKER_NODE_ARGS: extra node flags for the worker (--trace-gc, --max-semi-space-size=...).
  const extra = (process.env['BENCH_WORKER_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
  const nodeArgs = [...extra, ...(options.cpuProfileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', options.cpuProfileDir])];
  const child = spawn(process.execPath, [...nodeArgs, CLI, 'run', '--config', configPath], {
    env: { ...process.env, LOG_LEVEL: process.env['BENCH_WORKER_LOG'] ?? 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not start the worker');
  const pid = child.pid;
  const lines: string[] = [];
  let partial = '';
  let onStarted!: (started: { at: number; stats: ProcStats | undefined }) => void;
  let onFailed!: (e: Error) => void;
  const replicationStarted = new Promise<{ at: number; stats: ProcStats | undefined }>((resolve, reject) => {
    onStarted = resolve;
    onFailed = reject;
  });
  replicationStarted.catch(() => undefined);
  const keep = (line: string) => {
    lines.push(line);
    if (lines.length > 40) lines.shift();
  };
  // BENCH_WORKER_OUTPUT: a file that receives everything the worker writes.
  const copy = process.env['BENCH_WORKER_OUTPUT'];
  if (copy) {
    const file = createWriteStream(copy, { flags: 'a' });
    child.stdout!.pipe(file);
    child.stderr!.pipe(file);
  }
  child.stdout!.on('data', (chunk: Buffer) => {
    const now = performance.now();
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      keep(line);
      if (line.includes('"replication started"')) onStarted({ at: now, stats: procStats(pid) });
    }
  });
  child.stderr!.on('data', (chunk: Buffer) => keep(chunk.toString('utf8').trimEnd()));
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => {
      onFailed(new Error(`worker exited (${code ?? signal}) before replication started:\n${tail()}`));
      resolve(code ?? signal ?? 'unknown');
    });
  });
  const tail = () => [...lines, partial].filter((l) => l !== '').join('\n');

  return {
    child,
    pid,
    replicationStarted,
    exited,
    outputTail: tail,
    memory() {
      try {
        const status = readFileSync(`/proc/${pid}/status`, 'utf8');
        const peak = /^VmHWM:\s+(\d+) kB/m.exec(status);
        const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
        if (peak === null || rss === null) return undefined;
        return { peakKb: Number(peak[1]), rssKb: Number(rss[1]) };
      } catch {
        return undefined;
      }
    },
    async stop(timeoutMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}
