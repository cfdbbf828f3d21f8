// After each test file: no process it started may still run. A worker or a server a test forgot to
// stop would hold ports, slots and CPU for the files after it, and hide a shutdown bug; here it fails
// the file, naming the process. (The orphan guard's watcher, which outlives the file on purpose, is
// not counted; exited children not yet reaped are not either.)
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll } from 'vitest';

interface Child {
  pid: number;
  state: string;
  cmdline: string;
}

function childrenOf(parent: number): Child[] {
  const found: Child[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read from the last ')'.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) !== parent) continue;
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim();
      found.push({ pid: Number(entry), state: state!, cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const isWatcher = (c: Child) => c.cmdline.includes('-e') && c.cmdline.includes("require('node:fs')");

afterAll(async () => {
  if (process.platform !== 'linux') return;
  const deadline = Date.now() + 10_000;
  for (;;) {
    const left = childrenOf(process.pid).filter((c) => c.state !== 'Z' && !isWatcher(c));
    if (left.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`the test file left processes running: ${left.map((c) => `${c.pid} ${c.cmdline.slice(0, 120)}`).join('; ')}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}, 30_000);
