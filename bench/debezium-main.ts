// node bench/build/bench/debezium-main.js: runs the Debezium bench alone and prints its result as JSON.
//   BENCH_EVENTS (default 50000), BENCH_PARTITIONS (3), BENCH_ROUNDS (3), BENCH_PROFILE=1 (adds a
//   worker run under --cpu-prof, profile in bench/results/profile/debezium/), BENCH_TIMEOUT_MS.
import { positiveInt } from './env.js';
import { fileURLToPath } from 'node:url';
import { runDebeziumBench } from './debezium-bench.js';

const result = await runDebeziumBench({
  events: positiveInt('BENCH_EVENTS', 50_000),
  partitions: positiveInt('BENCH_PARTITIONS', 3),
  rounds: positiveInt('BENCH_ROUNDS', 3),
  timeoutMs: positiveInt('BENCH_TIMEOUT_MS', 600_000),
  ...(process.env['BENCH_PROFILE'] === '1' ? { cpuProfileDir: fileURLToPath(new URL('../../results/profile/debezium/', import.meta.url)) } : {}),
  say: (s) => process.stderr.write(`[bench] ${s}\n`),
});
process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
