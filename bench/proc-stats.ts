// CPU time and syscall counts of a process from Linux /proc, to see which side of the replication
// connection is busy and how many reads and writes a run takes. Undefined where /proc is missing or
// the process is gone.
import { readFileSync } from 'node:fs';

export interface ProcStats {
  /** user + system CPU time, seconds. */
  cpuSeconds: number;
  /**
   * syscr and syscw of /proc/<pid>/io: read(2)- and write(2)-family calls. libuv reads sockets with
   * read(2), so a Node process's socket reads count; PostgreSQL sends with send(2), which does not.
   */
  readCalls: number;
  writeCalls: number;
}

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every Linux architecture Node runs on

export function procStats(pid: number | 'self'): ProcStats | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    return {
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
      readCalls: Number(/^syscr: (\d+)/m.exec(io)?.[1] ?? Number.NaN),
      writeCalls: Number(/^syscw: (\d+)/m.exec(io)?.[1] ?? Number.NaN),
    };
  } catch {
    return undefined;
  }
}

/** Difference of two samples (after - before). */
export function diffStats(after: ProcStats | undefined, before: ProcStats | undefined): ProcStats | undefined {
  if (after === undefined || before === undefined) return undefined;
  return {
    cpuSeconds: Math.round((after.cpuSeconds - before.cpuSeconds) * 100) / 100,
    readCalls: after.readCalls - before.readCalls,
    writeCalls: after.writeCalls - before.writeCalls,
  };
}
