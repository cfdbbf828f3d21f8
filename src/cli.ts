#!/usr/bin/env node
/**
 * The entry point. `run` is a long-lived process whose memory and pause times depend on the size of
 * V8's young generation, which node fixes when it starts: unless the user chose otherwise, the
 * process replaces itself (execve: same pid, same stdio, same signals) with one started with the
 * settings in node-flags.ts, before anything else is loaded. Then the CLI proper.
 */
import { NODE_FLAGS_ENV, nodeFlagsToAdd } from './node-flags.js';

const add = nodeFlagsToAdd(process.argv.slice(2), process.execArgv, process.env);
if (add.length > 0 && typeof process.execve === 'function') {
  try {
    process.execve(process.execPath, [process.execPath, ...add, ...process.execArgv, ...process.argv.slice(1)], {
      ...process.env,
      [NODE_FLAGS_ENV]: add.join(' '),
    });
  } catch (err) {
    // Not fatal: the worker runs with node's defaults, which only cost memory.
    process.stderr.write(`cdc-invalidator: could not restart node with ${add.join(' ')}: ${(err as Error).message}\n`);
  }
}
await import('./cli-main.js');
