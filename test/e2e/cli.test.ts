import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RUN_NODE_FLAGS } from '../../src/node-flags.js';
import { servicesMissing } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';
import { createScenario, type Scenario } from '../integration/scenario.js';
import { runCli, spawnCli, type WorkerProcess } from './worker-process.js';

let scenario: Scenario | undefined;
let worker: WorkerProcess | undefined;
afterEach(async () => {
  if (worker !== undefined && worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGKILL');
    await worker.exited;
  }
  worker = undefined;
  await scenario?.cleanup();
  scenario = undefined;
});

describe.skipIf(servicesMissing('postgres', 'redis'))('the built binary', () => {
  it('runs, invalidates, and stops cleanly on SIGTERM with exit 0', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);`,
      rules: `
  - table: users
    invalidate: ["user:{id}"]
    bump: ["users:version"]
`,
    });
    const s = scenario;
    worker = spawnCli(['run', '--config', s.configPath]);
    await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'worker did not start streaming' });
    // The process started is the worker, restarted in place with the V8 settings of node-flags.ts.
    const cmdline = readFileSync(`/proc/${worker.pid}/cmdline`, 'utf8').split('\0');
    for (const flag of RUN_NODE_FLAGS) expect(cmdline).toContain(flag);
    await s.seed('user:1');
    const started = Date.now();
    await s.sql(`INSERT INTO users VALUES (1, 'a@x.io')`);
    await waitFor(async () => !(await s.exists('user:1')), { timeoutMs: 10_000, message: 'key not invalidated' });
    expect(Date.now() - started).toBeLessThan(5_000);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    const log = worker.output();
    expect(log).toContain('"to":"stopped"');
    // The final acknowledgement reached the slot: nothing is replayed after a clean stop.
    const [slot] = await s.sql<{ active: boolean; confirmed: string }>(
      `SELECT active, confirmed_flush_lsn::text AS confirmed FROM pg_replication_slots WHERE slot_name = $1`,
      [s.slot],
    );
    expect(slot!.active).toBe(false);
    // users:version holds the insert's commit LSN; the slot must be confirmed past that commit.
    const version = await s.get('users:version');
    expect(version).toMatch(/^\d+$/);
    const [cmp] = await s.sql<{ past: boolean }>(
      `SELECT $1::pg_lsn > ('0/0'::pg_lsn + $2::numeric) AS past`,
      [slot!.confirmed, version],
    );
    expect(cmp!.past).toBe(true);
    // Passwords never reach the log.
    expect(log).not.toMatch(/postgres:\/\/[^@"]*:[^@"]*@/);
  });

  it('exits 2 and names file, line and path for a bad mapping, for both validate and run', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY);`,
      rules: `
  - table: users
    invalidate: ["user:{id"]
`,
    });
    const s = scenario;
    for (const command of ['validate', 'run']) {
      const { code, output } = await runCli([command, '--config', s.configPath]);
      expect(code, output).toBe(2);
      expect(output).toMatch(/mappings\/rules\.yaml:4:\d+: rules\[0\]\.invalidate\[0\]: unclosed "\{"/);
      expect(output).not.toMatch(/\n\s+at /); // no stack trace for a user's mistake
    }
  });

  it('exits 2 for a config that does not exist or is invalid', async () => {
    const missing = await runCli(['validate', '--config', '/nonexistent/cdc.yaml']);
    expect(missing.code).toBe(2);
    expect(missing.output).toContain('/nonexistent/cdc.yaml');
    scenario = await createScenario({ schema: `CREATE TABLE public.t (id int PRIMARY KEY);`, rules: `\n  - table: t\n    invalidate: ["t:{id}"]\n` });
    const bad = join(scenario.dir, 'bad.yaml');
    writeFileSync(bad, `source:\n  kind: postgres\n  url: "postgres://u:sekret@h/db"\n  slot: Bad-Slot\nmappings: ./mappings\nbatch:\n  maxChanges: lots\n`);
    const result = await runCli(['run', '--config', bad]);
    expect(result.code).toBe(2);
    expect(result.output).toMatch(/bad\.yaml:4:\d+: source\.slot/);
    expect(result.output).toMatch(/bad\.yaml:7:\d+: batch\.maxChanges/);
    expect(result.output).not.toContain('sekret');
  });

  it('--help for every command, --version, options before the command, usage errors exit 2', async () => {
    for (const command of ['run', 'validate', 'check', 'explain', 'teardown']) {
      const help = await runCli([command, '--help']);
      expect([command, help.code]).toEqual([command, 0]);
      expect(help.output).toContain(`usage: cdc-invalidator ${command}`);
      expect(help.output).toContain('LOG_LEVEL');
    }
    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.output.trim()).toBe(JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')).version);
    scenario = await createScenario({ schema: `CREATE TABLE public.t (id int PRIMARY KEY);`, rules: `\n  - table: t\n    invalidate: ["t:{id}"]\n` });
    const optionFirst = await runCli(['--config', scenario.configPath, 'validate']);
    expect(optionFirst.code).toBe(0);
    expect(optionFirst.output).toMatch(/^ok: /);
    const typo = await runCli(['valdate', '--config', scenario.configPath]);
    expect(typo.code).toBe(2);
    expect(typo.output).toContain('unknown command "valdate"');
  });

  it('an invalid LOG_LEVEL or LOG_FORMAT is a config error (exit 2), not a crash', async () => {
    scenario = await createScenario({ schema: `CREATE TABLE public.t (id int PRIMARY KEY);`, rules: `\n  - table: t\n    invalidate: ["t:{id}"]\n` });
    const level = await runCli(['run', '--config', scenario.configPath], { LOG_LEVEL: 'verbose' });
    expect(level.code).toBe(2);
    expect(level.output.trim()).toBe('cdc-invalidator: LOG_LEVEL "verbose" is not a log level (fatal, error, warn, info, debug, trace, silent)');
    const format = await runCli(['run', '--config', scenario.configPath], { LOG_FORMAT: 'xml' });
    expect(format.code).toBe(2);
    expect(format.output).toContain('LOG_FORMAT "xml" is not a log format');
  });

  it('teardown says what it would drop, refuses while a worker streams, then drops the slot and the publication', async () => {
    scenario = await createScenario({ schema: `CREATE TABLE public.t (id int PRIMARY KEY);`, rules: `\n  - table: t\n    invalidate: ["t:{id}"]\n` });
    const slots = () => scenario!.sql<{ n: string }>(`SELECT count(*)::text AS n FROM pg_replication_slots WHERE slot_name = $1`, [scenario!.slot]);
    const pubs = () => scenario!.sql<{ n: string }>(`SELECT count(*)::text AS n FROM pg_publication WHERE pubname = $1`, [scenario!.publication]);
    worker = spawnCli(['run', '--config', scenario.configPath]);
    await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'no start' });
    expect(worker.output()).toContain(`"from":"the slot's confirmed position"`);
    const busy = await runCli(['teardown', '--yes', '--config', scenario.configPath]);
    expect(busy.code).toBe(1);
    expect(busy.output).toMatch(/slot ".*" is being streamed \(walsender pid \d+\): stop the worker first/);
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    const dry = await runCli(['teardown', '--config', scenario.configPath]);
    expect(dry.code).toBe(0);
    expect(dry.output).toContain(`would drop replication slot "${scenario.slot}"`);
    expect(dry.output).toContain(`would drop publication "${scenario.publication}"`);
    expect((await slots())[0]!.n).toBe('1');
    const done = await runCli(['teardown', '--config', scenario.configPath, '--yes']);
    expect(done.code).toBe(0);
    expect(done.output).toContain(`dropped replication slot "${scenario.slot}"`);
    expect(done.output).toContain(`dropped publication "${scenario.publication}"`);
    expect([(await slots())[0]!.n, (await pubs())[0]!.n]).toEqual(['0', '0']);
    const again = await runCli(['teardown', '--config', scenario.configPath, '--yes']);
    expect(again.code).toBe(0);
    expect(again.output).toContain('nothing to drop');
  });

  it('exits 1 with a clear message when a mapped table does not exist', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.t (id int PRIMARY KEY);`,
      rules: `\n  - table: public.nope\n    invalidate: ["n:{id}"]\n`,
    });
    const { code, output } = await runCli(['run', '--config', scenario.configPath]);
    expect(code).toBe(1);
    expect(output).toContain('mapped table not found in the database: public.nope');
  });

  it('exits 2, naming the mapping file and line, when a template names a column the table lacks', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.comments (id int PRIMARY KEY, user_id int NOT NULL, content text);`,
      rules: `\n  - table: comments\n    invalidate: ["comment:{id}", "comments:user:{usr_id}"]\n`,
    });
    const { code, output } = await runCli(['run', '--config', scenario.configPath]);
    expect(code).toBe(2);
    expect(output).toMatch(/rules\.yaml:4:\d+: rules\[0\]\.invalidate\[1\]: "comments:user:\{usr_id\}" names column "usr_id"/);
    expect(output).toContain('did you mean "user_id"?');
    expect(output).toContain('its columns are id, user_id, content');
    expect(output).toContain('the worker did not start');
    // Refused before anything was set up.
    const pubs = await scenario.sql<{ n: string }>(`SELECT count(*)::text AS n FROM pg_publication WHERE pubname = '${scenario.publication}'`);
    expect(pubs[0]!.n).toBe('0');
  });

  it('exits 2 with the ALTER TABLE that fixes it when the replica identity cannot serve a rule', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text NOT NULL);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}", "user:email:{email}"]\n`,
    });
    const { code, output } = await runCli(['run', '--config', scenario.configPath]);
    expect(code).toBe(2);
    expect(output).toContain('REPLICA IDENTITY DEFAULT sends only the primary key (id)');
    expect(output).toContain('Run ALTER TABLE public.users REPLICA IDENTITY FULL;');
    expect(output).toContain('source.replicaIdentity: full');
  });

  it('explain prints the key operations of one change', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY, email text);`,
      rules: `
  - table: users
    invalidate: ["user:{id}", "user:email:{email}"]
`,
    });
    const { code, output } = await runCli([
      'explain', '--config', scenario.configPath, '--table', 'users', '--op', 'update',
      '--before', '{"id": 1, "email": "a@x.io"}', '--after', '{"id": 1, "email": "b@x.io"}',
    ]);
    expect(code).toBe(0);
    expect(output.trim().split('\n')).toEqual(['DEL user:1', 'DEL user:email:a@x.io', 'DEL user:email:b@x.io']);
  });

  it('a second SIGTERM forces a stop with a non-zero exit while a batch cannot be applied', async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.users (id int PRIMARY KEY);`,
      rules: `\n  - table: users\n    invalidate: ["user:{id}"]\n`,
    });
    const s = scenario;
    const { sharedRedis } = await import('../harness/services.js');
    const redis = await sharedRedis();
    worker = spawnCli(['run', '--config', s.configPath], { LOG_LEVEL: 'info' });
    await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'worker did not start' });
    await redis.kill();
    try {
      await s.sql(`INSERT INTO users VALUES (1)`);
      await waitFor(() => worker!.output().includes('redis apply failed; retrying'), { timeoutMs: 20_000, message: 'no retry logged' });
      worker.child.kill('SIGTERM');
      await waitFor(() => worker!.output().includes('stopping; send the signal again to force'), { timeoutMs: 5_000, message: 'first signal not logged' });
      // The first signal waits for the batch in flight, which cannot finish while Redis is down.
      await new Promise((r) => setTimeout(r, 300));
      expect(worker.child.exitCode).toBeNull();
      const forcedAt = Date.now();
      worker.child.kill('SIGTERM');
      expect(await worker.exited).toBe(1);
      expect(Date.now() - forcedAt).toBeLessThan(5_000);
      // Nothing was confirmed for the unapplied insert: a restarted worker will apply it.
      const [slot] = await s.sql<{ behind: boolean }>(
        `SELECT confirmed_flush_lsn < pg_current_wal_insert_lsn() AS behind FROM pg_replication_slots WHERE slot_name = $1`,
        [s.slot],
      );
      expect(slot!.behind).toBe(true);
    } finally {
      await redis.restart();
    }
    worker = spawnCli(['run', '--config', s.configPath]);
    await s.barrier();
  });

  it('stops promptly on SIGTERM while still waiting for the database to come up', async () => {
    scenario = await createScenario({ schema: `CREATE TABLE public.t (id int PRIMARY KEY);`, rules: `\n  - table: t\n    invalidate: ["t:{id}"]\n` });
    const { freePort } = await import('../harness/free-port.js');
    const port = await freePort();
    const config = join(scenario.dir, 'down.yaml');
    writeFileSync(config, `source:\n  kind: postgres\n  url: "postgres://postgres:pw@127.0.0.1:${port}/x"\nmappings: ./mappings\n`);
    worker = spawnCli(['run', '--config', config]);
    await waitFor(() => worker!.output().includes('database not reachable; retrying setup'), { timeoutMs: 20_000, message: 'no retry logged' });
    const stopAt = Date.now();
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(Date.now() - stopAt).toBeLessThan(3_000);
    expect(worker.output()).not.toContain(':pw@');
  });

  it('stops on SIGTERM while the replication stream is paused for backpressure', { timeout: 120_000 }, async () => {
    scenario = await createScenario({
      schema: `CREATE TABLE public.items (id int PRIMARY KEY);`,
      rules: `\n  - table: items\n    invalidate: ["item:{id}"]\n`,
      config: 'batch:\n  maxChanges: 100\n',
    });
    const s = scenario;
    const { sharedRedis } = await import('../harness/services.js');
    const redis = await sharedRedis();
    worker = spawnCli(['run', '--config', s.configPath]);
    await waitFor(() => worker!.output().includes('replication started'), { timeoutMs: 30_000, message: 'worker did not start' });
    // Redis hangs: the worker buffers up to its high-water mark (5,000 here), then pauses the socket.
    await redis.pause();
    try {
      await s.sql(`INSERT INTO items SELECT generate_series(1, 50000)`);
      await new Promise((r) => setTimeout(r, 3_000));
      const stopAt = Date.now();
      worker.child.kill('SIGTERM');
      // The batch in flight cannot finish (drain bound 10 s); then the stop must complete.
      const code = await Promise.race([worker.exited, new Promise((r) => setTimeout(() => r('still running'), 60_000))]);
      expect(code).toBe(0);
      expect(Date.now() - stopAt).toBeLessThan(30_000);
    } finally {
      await redis.resume();
    }
  });
});
