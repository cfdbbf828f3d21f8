import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    environment: 'node',
    include: ['test/**/*.test.ts'],
    // Integration tests start Postgres and Redis per file; allow for a slow, busy CI machine.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    teardownTimeout: 60_000,
    // Each file runs in its own forked process with a fresh module registry (the default isolation),
    // which gives each file its own servers (test/harness/services.ts). The machine has 2 cores, and each
    // file may run a Postgres, a Redis and a worker beside vitest: two files at a time is the limit.
    pool: 'forks',
    isolate: true,
    maxWorkers: 2,
    reporters: ['default', './test/harness/summary-reporter.ts'],
    // Fails a file that leaves a process it started running (test/harness/leak-check.ts).
    setupFiles: ['./test/harness/leak-check.ts'],
    // Where server binaries are missing and a Docker engine answers, those servers run in containers.
    globalSetup: ['./test/harness/global-setup.ts'],
  },
});
