// Runs the built binary as a user would: `node dist/cli.js <args>`.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface WorkerProcess {
  child: ChildProcess;
  pid: number;
  /** Everything written to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (or the signal's name) once the process has exited. */
  exited: Promise<number | string>;
}

export function spawnCli(args: string[], env: Record<string, string> = {}): WorkerProcess {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first (npm test does)`);
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: process.env['TEST_LOG'] ?? 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    if (process.env['TEST_LOG']) process.stdout.write(d);
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
    if (process.env['TEST_LOG']) process.stderr.write(d);
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  return { child, pid: child.pid!, output: () => out, exited };
}

/** Runs a command to completion. */
export async function runCli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | string; output: string }> {
  const p = spawnCli(args, env);
  const code = await p.exited;
  return { code, output: p.output() };
}
