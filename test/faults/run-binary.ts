// Runs the built binary to completion and returns everything it wrote. Unlike test/e2e's runCli, it
// resolves on 'close' (the process has exited *and* its stdout and stderr are drained), so the last
// lines a short-lived process writes are never missing from the output.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { CLI } from '../e2e/worker-process.js';

export async function runBinary(
  args: string[],
  env: Record<string, string> = {},
  options: { timeoutMs?: number } = {},
): Promise<{ code: number | string; output: string; stdout: string; stderr: string }> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    output += d.toString();
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    output += d.toString();
    stderr += d.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
  const code = await new Promise<number | string>((resolve) => {
    child.on('close', (exitCode, signal) => resolve(exitCode ?? signal ?? 'unknown'));
  });
  clearTimeout(timer);
  return { code, output, stdout, stderr };
}
