// Process plumbing shared by the Postgres and Redis harnesses: temp dirs, spawning (as another user when
// the tests run as root), waiting for exit, and cleanup of servers whose test process died.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { waitFor } from './wait-for.js';

export interface UserIds {
  name: string;
  uid: number;
  gid: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** True when this process runs as root (CI does), where servers that refuse root must drop privileges. */
export function runningAsRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The uid and gid of an OS user, from /etc/passwd or, failing that, `id`. */
export function lookupUser(name: string): UserIds | undefined {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const fields = line.split(':');
      if (fields[0] === name && fields.length >= 4) {
        return { name, uid: Number(fields[2]), gid: Number(fields[3]) };
      }
    }
  } catch {
    // no /etc/passwd to read: ask id below (NSS users, other systems)
  }
  try {
    const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    if (Number.isInteger(uid) && Number.isInteger(gid)) return { name, uid, gid };
  } catch {
    // no such user
  }
  return undefined;
}

/** The first executable named `name` on PATH. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

export function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * A fresh temp dir. When `owner` is given (a server that will run as another user), the dir is chowned
 * to it, and the base is checked to be reachable by that user: a root-only TMPDIR such as /root/tmp would
 * make the server fail with a confusing "permission denied" on its own data dir.
 */
export function makeTempDir(prefix: string, owner?: UserIds): string {
  let base = tmpdir();
  if (owner !== undefined && !traversableByOthers(base)) base = '/tmp';
  const dir = mkdtempSync(join(base, prefix));
  if (owner !== undefined) chownSync(dir, owner.uid, owner.gid);
  return dir;
}

function traversableByOthers(path: string): boolean {
  for (let dir = path; ; dir = dirname(dir)) {
    try {
      if ((statSync(dir).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (dirname(dir) === dir) return true;
  }
}

/** The last `lines` lines of a log file, for error messages; empty when it cannot be read. */
export function logTail(path: string, lines = 30): string {
  try {
    const text = readFileSync(path, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

/** The size of a log file in bytes (0 when missing), to read only what a later start appends. */
export function logSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

/** A log file's text from byte `offset` on; empty when it cannot be read. */
export function readLogFrom(path: string, offset: number): string {
  try {
    return readFileSync(path).subarray(offset).toString('utf8');
  } catch {
    return '';
  }
}

export interface SpawnServerOptions {
  cwd: string;
  logFile: string;
  /** Run as this user (only possible, and only needed, when running as root). */
  user?: UserIds | undefined;
  env?: NodeJS.ProcessEnv;
}

/** A server's main process while it runs: a process of this machine, or a container (containers.ts). */
export interface RunningServer {
  readonly pid: number;
  readonly running: boolean;
  readonly status: ExitStatus | undefined;
  readonly exited: Promise<ExitStatus>;
  /** Resolves once the signal was delivered (at once for a local process). */
  signal(signal: NodeJS.Signals): void | Promise<void>;
  /** Waits for the exit; SIGKILLs the server when it has not exited after `timeoutMs`. */
  waitExit(timeoutMs: number): Promise<ExitStatus>;
}

/** A long-running server process whose output goes to a log file (appended across restarts). */
export class ServerProcess implements RunningServer {
  readonly pid: number;
  readonly exited: Promise<ExitStatus>;
  #status: ExitStatus | undefined;

  private constructor(child: ChildProcess) {
    if (child.pid === undefined) throw new Error('spawn returned no pid');
    this.pid = child.pid;
    this.exited = new Promise<ExitStatus>((resolve) => {
      child.once('exit', (code, signal) => {
        this.#status = { code, signal };
        resolve(this.#status);
      });
    });
  }

  static async spawn(command: string, args: readonly string[], options: SpawnServerOptions): Promise<ServerProcess> {
    const logFd = openSync(options.logFile, 'a');
    try {
      const child = spawn(command, args, {
        cwd: options.cwd,
        env: options.env ?? process.env,
        stdio: ['ignore', logFd, logFd],
        ...(options.user === undefined ? {} : { uid: options.user.uid, gid: options.user.gid }),
      });
      // A failed exec (ENOENT, EACCES) is reported as an 'error' event, not as a throw.
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (err) => reject(new Error(`could not start ${command}: ${err.message}`, { cause: err })));
      });
      // Later errors (a signal to a process that is gone) must not become uncaught 'error' events.
      child.on('error', () => undefined);
      return new ServerProcess(child);
    } finally {
      closeSync(logFd);
    }
  }

  get running(): boolean {
    return this.#status === undefined;
  }

  get status(): ExitStatus | undefined {
    return this.#status;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.pid, signal);
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }

  /** Waits for the process to exit; SIGKILLs it when it has not after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<ExitStatus> {
    return await waitExitOrKill(this, timeoutMs);
  }
}

/** Waits for a server's exit; SIGKILLs it when it has not exited after `timeoutMs`. */
export async function waitExitOrKill(server: Pick<RunningServer, 'exited' | 'signal'>, timeoutMs: number): Promise<ExitStatus> {
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs);
  });
  try {
    const first = await Promise.race([server.exited, timedOut]);
    if (first !== 'timeout') return first;
    await server.signal('SIGKILL');
    return await server.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Pids whose parent is `pid` (Linux /proc; empty elsewhere). */
export function childPids(pid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  const children: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry));
    if (stat !== undefined && stat.ppid === pid) children.push(Number(entry));
  }
  return children;
}

/** True while `pid` exists and is not a zombie (an exited orphan that PID 1 has not reaped yet). */
export function processAlive(pid: number): boolean {
  const stat = readProcStat(pid);
  if (stat !== undefined) return stat.state !== 'Z' && stat.state !== 'X';
  if (existsSync('/proc/self/stat')) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function readProcStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) state ppid ...": comm may itself contain spaces and parentheses.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '', ppid: Number(rest[1]) };
  } catch {
    return undefined;
  }
}

/** Waits until none of `pids` is alive. */
export async function waitForPidsGone(pids: readonly number[], timeoutMs: number, what: string): Promise<void> {
  await waitFor(() => pids.every((pid) => !processAlive(pid)), {
    timeoutMs,
    intervalMs: 20,
    message: `${what} to exit (pids ${pids.join(', ')})`,
  });
}

/** SIGKILL, ignoring processes that are already gone. */
export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
