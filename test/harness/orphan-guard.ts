import { spawn, type ChildProcess } from 'node:child_process';

// Servers must not outlive the test process that started them, even when afterAll never runs: vitest
// ends its forked workers with SIGTERM and then SIGKILL, so no 'exit' handler is reliable. Instead a
// small watcher process (one per test process, started on first use) holds the read end of a pipe from
// us; when we die in any way the pipe closes, and it SIGKILLs the servers still registered and removes
// their dirs. It runs in its own session so that a Ctrl-C in the terminal does not take it down first.
const WATCHER_SCRIPT = `
const fs = require('node:fs');
const entries = new Map();
let buffer = '';
function childPids(pid) {
  const found = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\\d+$/.test(name)) continue;
    try {
      const stat = fs.readFileSync('/proc/' + name + '/stat', 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) found.push(Number(name));
    } catch {}
  }
  return found;
}
function alive(pid) {
  try {
    const stat = fs.readFileSync('/proc/' + pid + '/stat', 'utf8');
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
  } catch { return false; }
}
function cleanUp() {
  const pids = [];
  for (const { pid } of entries.values()) {
    if (pid > 0) pids.push(pid, ...childPids(pid));
  }
  for (const pid of pids) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  const deadline = Date.now() + 5000;
  while (pids.some(alive) && Date.now() < deadline) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20);
  for (const { dir } of entries.values()) {
    try { fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 }); } catch {}
  }
  process.exit(0);
}
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buffer += chunk;
  for (let i = buffer.indexOf('\\n'); i >= 0; i = buffer.indexOf('\\n')) {
    const message = JSON.parse(buffer.slice(0, i));
    buffer = buffer.slice(i + 1);
    if (message.op === 'set') entries.set(message.id, { pid: message.pid, dir: message.dir });
    else entries.delete(message.id);
  }
});
process.stdin.on('end', cleanUp);
process.stdin.on('error', cleanUp);
`;

let watcher: ChildProcess | undefined;
let nextGuardId = 0;

function sendToWatcher(message: object): void {
  if (watcher === undefined) {
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // vitest's loaders have no business in the watcher
    watcher = spawn(process.execPath, ['-e', WATCHER_SCRIPT], { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env });
    watcher.on('error', () => undefined);
    watcher.stdin?.on('error', () => undefined);
    // Neither the watcher nor the pipe to it may keep a finished test process alive.
    watcher.unref();
    (watcher.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  }
  watcher.stdin?.write(`${JSON.stringify(message)}\n`);
}

/** Registers a server's dir (and its pid while one runs) with the watcher; see WATCHER_SCRIPT. */
export class OrphanGuard {
  readonly #id = String(++nextGuardId);
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir;
    this.track(undefined);
  }

  /** The pid now running from the dir, or undefined once it has exited (its pid may be reused). */
  track(pid: number | undefined): void {
    sendToWatcher({ op: 'set', id: this.#id, pid: pid ?? 0, dir: this.#dir });
  }

  /** The server was destroyed: nothing left to clean up. */
  release(): void {
    sendToWatcher({ op: 'del', id: this.#id });
  }
}
