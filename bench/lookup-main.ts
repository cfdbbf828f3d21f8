// Catch-up with a lookup rule against the decode-only consumer (bench/lookup-bench.ts):
//   node bench/build/bench/lookup-main.js
// LOOKUP_BENCH_CHANGES (150000), LOOKUP_BENCH_PARAMS (1000), LOOKUP_BENCH_ROUNDS (1);
// LOOKUP_BENCH_BASELINE=/path/to/other/dist/cli.js also runs that build on the same backlog;
// LOOKUP_BENCH_WITHOUT_LOOKUP=1 also runs this build with a rule giving the same keys without a lookup.
// Prints a summary to stderr and the result as JSON to stdout and bench/results/lookup-latest.json.
import { positiveInt } from './env.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runLookupBench } from './lookup-bench.js';
import { CLI } from './worker-process.js';

const RESULTS_DIR = fileURLToPath(new URL('../../results/', import.meta.url));

async function main(): Promise<void> {
  const baseline = process.env['LOOKUP_BENCH_BASELINE'];
  const result = await runLookupBench({
    changes: positiveInt('LOOKUP_BENCH_CHANGES', 150_000),
    distinctParams: positiveInt('LOOKUP_BENCH_PARAMS', 1_000),
    rounds: positiveInt('LOOKUP_BENCH_ROUNDS', 1),
    timeoutMs: positiveInt('BENCH_TIMEOUT_MS', 600_000),
    workers: [
      ...(baseline ? [{ name: 'baseline', cli: baseline }] : []),
      { name: 'worker', cli: CLI },
      ...(process.env['LOOKUP_BENCH_WITHOUT_LOOKUP'] === '1' ? [{ name: 'worker without lookup', cli: CLI, lookup: false }] : []),
    ],
    say: (s) => process.stderr.write(`[lookup-bench] ${s}\n`),
  });
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = `${JSON.stringify(result, null, 2)}\n`;
  writeFileSync(join(RESULTS_DIR, 'lookup-latest.json'), json);
  process.stdout.write(json);
}

main().catch((err: unknown) => {
  process.stderr.write(`lookup bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
