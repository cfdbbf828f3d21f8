// The README's quick start, walked as a new user would: its `node dist/cli.js` commands, read from the
// README itself, against a fresh database holding examples/schema.sql, with the example config and
// mappings as they ship (their URLs and HTTP port from the environment), then the demo and the cleanup.
import { cpSync, existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { createTestDatabase, servicesMissing, sharedPostgres, sharedRedis } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { runCli, spawnCli, type WorkerProcess } from './worker-process.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The `node dist/cli.js ...` lines of the README's sh blocks between two headings, comments cut. */
function cliLines(fromHeading: string, toHeading: string): string[][] {
  const section = README.slice(README.indexOf(fromHeading), README.indexOf(toHeading, README.indexOf(fromHeading) + 1));
  const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  return blocks
    .flatMap((b) => b.split('\n'))
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter((line) => line.startsWith('node dist/cli.js '))
    .map((line) => line.slice('node dist/cli.js '.length).split(/\s+/));
}

let worker: WorkerProcess | undefined;
afterEach(async () => {
  if (worker !== undefined && worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGKILL');
    await worker.exited;
  }
});

describe.skipIf(servicesMissing('postgres', 'redis'))('the quick start', () => {
  it('validate, check, run, the demo and teardown, as the README writes them', { timeout: 120_000 }, async () => {
    const commands = cliLines('## Quick start without Docker', '## Worked example');
    expect(commands.map((c) => c[0])).toEqual(['validate', 'check', 'run', 'teardown', 'teardown']);

    // A fresh database with the demo schema, the example files in a folder of their own.
    const pg = await sharedPostgres();
    const db = await createTestDatabase('app');
    await pg.query(readFileSync(join(ROOT, 'examples', 'schema.sql'), 'utf8'), [], db.name);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-quick-'));
    cpSync(join(ROOT, 'cdc-invalidator.yaml'), join(dir, 'cdc-invalidator.yaml'));
    cpSync(join(ROOT, 'mappings'), join(dir, 'mappings'), { recursive: true });
    const redisServer = await sharedRedis();
    const env = { DATABASE_URL: db.url, REDIS_URL: redisServer.url(), HTTP_PORT: '0' };
    const inDir = (args: string[]) => args.map((a) => (a === 'cdc-invalidator.yaml' ? join(dir, a) : a));
    expect(existsSync(join(dir, 'cdc-invalidator.yaml'))).toBe(true);

    const [validate, check, run, dryTeardown, teardown] = commands.map(inDir) as [string[], string[], string[], string[], string[]];
    const validated = await runCli(validate, env);
    expect([validated.code, validated.output]).toEqual([0, expect.stringMatching(/^ok: .*cdc-invalidator\.yaml, 2 mapping file\(s\), 2 rule\(s\) on 2 table\(s\)\n$/)]);
    const checked = await runCli(check, env);
    expect(checked.output.split('\n').filter((l) => /^(FAIL|fail)\b/.test(l))).toEqual([]);
    expect(checked.code).toBe(0);

    worker = spawnCli(run, env);
    await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: `the worker to start:\n${worker.output()}` });
    const redis = new Redis(redisServer.url());
    try {
      // The demo: a cached user, an UPDATE, the key gone.
      await redis.set('user:1', 'cached');
      await pg.query("UPDATE users SET name = 'Ada King' WHERE id = 1", [], db.name);
      await waitFor(async () => (await redis.exists('user:1')) === 0, { timeoutMs: 20_000, message: 'user:1 to be deleted' });
    } finally {
      redis.disconnect();
    }
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);

    const dry = await runCli(dryTeardown, env);
    expect(dry.code).toBe(0);
    expect(dry.output).toContain('would drop replication slot "cdc_invalidator"');
    const done = await runCli(teardown, env);
    expect(done.code).toBe(0);
    expect(done.output).toContain('dropped replication slot "cdc_invalidator"');
    expect(await pg.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'cdc_invalidator'")).toEqual([]);
    expect(await pg.query("SELECT 1 FROM pg_publication WHERE pubname = 'cdc_invalidator'", [], db.name)).toEqual([]);
  });

  it('check passes on the worked example written as query rules, and sees their derived lookup', { timeout: 60_000 }, async () => {
    const pg = await sharedPostgres();
    const db = await createTestDatabase('app');
    await pg.query(readFileSync(join(ROOT, 'examples', 'schema.sql'), 'utf8'), [], db.name);
    const dir = mkdtempSync(join(tmpdir(), 'cdc-quick-'));
    cpSync(join(ROOT, 'examples', 'query-rules'), dir, { recursive: true });
    const redisServer = await sharedRedis();
    const checked = await runCli(['check', '--config', join(dir, 'cdc-invalidator.yaml')], { DATABASE_URL: db.url, REDIS_URL: redisServer.url(), HTTP_PORT: '0' });
    expect(checked.output.split('\n').filter((l) => /^(FAIL|fail)\b/.test(l))).toEqual([]);
    expect(checked.code).toBe(0);
    expect(checked.output).toContain('mappings/app.yaml#rules[2](c)');
  });
});
