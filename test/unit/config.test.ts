import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { loadConfig } from '../../src/config/load.js';
import { expandEnv } from '../../src/config/substitute-env.js';
import { formatPath } from '../../src/config/yaml-document.js';
import { ConfigError, type FileProblem } from '../../src/errors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cdc-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function write(files: Record<string, string>): Promise<void> {
  for (const [name, text] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, name)), { recursive: true });
    await writeFile(path.join(dir, name), text);
  }
}

const USERS = 'rules:\n  - table: users\n    invalidate: ["user:{id}"]\n';

async function problemsOf(promise: Promise<unknown>): Promise<FileProblem[]> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ConfigError);
  return (err as ConfigError).problems;
}

describe('a valid config', () => {
  test('a debezium source declares replica identities by table, "*" for the rest', async () => {
    await write({
      'cdc-invalidator.yaml':
        'source:\n  kind: debezium\n  brokers: [localhost:9092]\n  topics: [app.public.users]\n' +
        '  tableIdentities:\n    users: full\n    public.orders: { index: [sku] }\n    "*": default\nmappings: mappings\n',
      'mappings/users.yaml': `${USERS}  - table: orders\n    invalidate: ["order:{sku}"]\n`,
    });
    const loaded = await loadConfig(path.join(dir, 'cdc-invalidator.yaml'), {});
    expect(loaded.config.source.kind === 'debezium' && loaded.config.source.tableIdentities).toEqual({
      users: 'full',
      'public.orders': { index: ['sku'] },
      '*': 'default',
    });
  });

  test('gets every default', async () => {
    await write({
      'cdc-invalidator.yaml': 'source:\n  kind: postgres\n  url: postgres://localhost/app\nmappings: mappings\n',
      'mappings/users.yaml': USERS,
    });
    const loaded = await loadConfig(path.join(dir, 'cdc-invalidator.yaml'), {});
    expect(loaded.configFile).toBe(path.join(dir, 'cdc-invalidator.yaml'));
    expect(loaded.config).toEqual({
      source: {
        kind: 'postgres',
        url: 'postgres://localhost/app',
        slot: 'cdc_invalidator',
        publication: 'cdc_invalidator',
        heartbeatSeconds: 15,
        slotLost: 'fail',
        replicaIdentity: 'check',
      },
      redis: { url: 'redis://127.0.0.1:6379', keyPrefix: '', deleteCommand: 'del', leases: true, leasePrefix: 'cdc-lease:', waitReplicas: 0, waitTimeoutMs: 1000 },
      mappings: 'mappings',
      http: { host: '0.0.0.0', port: 9464, readyMaxLagSeconds: 60, stuckAfterSeconds: 120, slotStatsIntervalSeconds: 10 },
      batch: { maxChanges: 5000, maxWaitMs: 0 },
      consistency: { visibility: 'auto', replicas: [], replicaTimeoutMs: 30_000, replicaPollMs: 20 },
      log: { level: 'info', format: 'json' },
    });
    expect(loaded.mappingFiles).toEqual([path.join(dir, 'mappings/users.yaml')]);
    expect(loaded.rules.tables).toEqual([['public', 'users']]);
    expect(loaded.rules.byTable.get('public.users')?.[0]?.id).toBe('mappings/users.yaml#rules[0]');
    expect(loaded.warnings).toEqual([]);
  });

  test('keeps given values, partial sections filled with defaults', async () => {
    await write({
      'etc/config.yml': [
        'source:',
        '  kind: postgres',
        '  url: postgres://db/app',
        '  slot: app_slot_1',
        '  heartbeatSeconds: 0',
        'redis:',
        '  keyPrefix: "app:"',
        '  deleteCommand: unlink',
        'http: { port: 0 }',
        'batch: { maxWaitMs: 5 }',
        'log: { level: silent }',
        'mappings: ../rules/users.yaml',
        '',
      ].join('\n'),
      'rules/users.yaml': USERS,
    });
    const loaded = await loadConfig(path.join(dir, 'etc/config.yml'), {});
    expect(loaded.config.source).toMatchObject({ slot: 'app_slot_1', publication: 'cdc_invalidator', heartbeatSeconds: 0 });
    expect(loaded.config.redis).toEqual({ url: 'redis://127.0.0.1:6379', keyPrefix: 'app:', deleteCommand: 'unlink', leases: true, leasePrefix: 'cdc-lease:', waitReplicas: 0, waitTimeoutMs: 1000 });
    expect(loaded.config.http).toMatchObject({ host: '0.0.0.0', port: 0 });
    expect(loaded.config.batch).toEqual({ maxChanges: 5000, maxWaitMs: 5 });
    expect(loaded.config.log.level).toBe('silent');
    expect(loaded.mappingFiles).toEqual([path.join(dir, 'rules/users.yaml')]);
    expect(loaded.rules.byTable.get('public.users')?.[0]?.id).toBe('../rules/users.yaml#rules[0]');
  });

  test.each([
    ['url', 'redis:\n  url: redis://r:6379\n', { url: 'redis://r:6379', waitReplicas: 0 }],
    ['cluster', 'redis:\n  cluster: [redis://a:7000, redis://b:7000]\n', { url: undefined, cluster: ['redis://a:7000', 'redis://b:7000'], waitReplicas: 1 }],
    ['sentinel', 'redis:\n  sentinel: { name: m, nodes: [redis://s:26379] }\n', { url: undefined, sentinel: { name: 'm', nodes: ['redis://s:26379'], tls: false }, waitReplicas: 1 }],
    ['cluster, waitReplicas 0', 'redis:\n  cluster: [redis://a:7000]\n  waitReplicas: 0\n', { url: undefined, waitReplicas: 0 }],
  ])('redis target %s: its default waitReplicas', async (_name, redis, expected) => {
    await write({ 'c.yaml': `source:\n  kind: postgres\n  url: postgres://db/app\n${redis}mappings: m\n`, 'm/users.yaml': USERS });
    const loaded = await loadConfig(path.join(dir, 'c.yaml'), {});
    expect(loaded.config.redis).toMatchObject(expected);
  });

  test('reads a mappings directory recursively and in order, skipping hidden entries', async () => {
    await write({
      'c.yaml': 'source: { kind: postgres, url: postgres://db/x }\nmappings: ./m\n',
      'm/b.yml': 'rules:\n  - table: shop.orders\n    bump: ["orders:version"]\n',
      'm/a/z.yaml': USERS,
      'm/a.yaml': 'rules:\n  - table: users\n    on: [delete]\n    bump: ["users:version"]\n',
      'm/notes.txt': 'not a mapping',
      'm/.old.yaml': 'rules: [',
      'm/..data/a.yaml': 'rules: [',
    });
    const loaded = await loadConfig(path.join(dir, 'c.yaml'), {});
    expect(loaded.mappingFiles).toEqual(['m/a.yaml', 'm/a/z.yaml', 'm/b.yml'].map((f) => path.join(dir, f)));
    expect(loaded.rules.tables).toEqual([
      ['public', 'users'],
      ['shop', 'orders'],
    ]);
    expect(loaded.rules.byTable.get('public.users')?.map((r) => r.id)).toEqual([
      'm/a.yaml#rules[0]',
      'm/a/z.yaml#rules[0]',
    ]);
  });

  test('warns about a mapping file without rules', async () => {
    await write({
      'c.yaml': 'source: { kind: postgres, url: postgres://db/x }\nmappings: m\n',
      'm/empty.yaml': 'rules: []\n',
      'm/users.yaml': USERS,
    });
    const loaded = await loadConfig(path.join(dir, 'c.yaml'), {});
    expect(loaded.warnings).toEqual([
      {
        file: path.join(dir, 'm/empty.yaml'),
        line: 1,
        column: 8,
        path: 'rules',
        message: '"rules" is empty: this file maps no table',
        severity: 'warning',
      },
    ]);
  });
});

describe('environment substitution', () => {
  const config = (body: string) => ({
    'c.yaml': `source:\n  kind: postgres\n  url: \${DATABASE_URL}\n${body}mappings: m\n`,
    'm/users.yaml': USERS,
  });
  const load = () => loadConfig(path.join(dir, 'c.yaml'), { DATABASE_URL: 'postgres://u:p@db/app', ...env });
  let env: Record<string, string | undefined> = {};
  beforeEach(() => {
    env = {};
  });

  test('uses set variables and defaults', async () => {
    await write(config('redis:\n  url: ${REDIS_URL:-redis://cache:6379}\n  keyPrefix: "${APP}:${STAGE:-dev}:"\n'));
    env = { APP: 'shop', STAGE: '' };
    const loaded = await load();
    expect(loaded.config.source.url).toBe('postgres://u:p@db/app');
    expect(loaded.config.redis.url).toBe('redis://cache:6379');
    // As in the shell, `:-` also replaces a variable that is set but empty.
    expect(loaded.config.redis.keyPrefix).toBe('shop:dev:');
  });

  test('types a plain scalar that is wholly a reference, as YAML would', async () => {
    await write(config('http:\n  port: ${PORT}\nbatch:\n  maxChanges: ${MAX:-100}\n'));
    env = { PORT: '9000' };
    const loaded = await load();
    expect(loaded.config.http.port).toBe(9000);
    expect(loaded.config.batch.maxChanges).toBe(100);
  });

  test('keeps a quoted reference a string', async () => {
    await write(config('http:\n  port: "${PORT}"\n'));
    env = { PORT: '9000' };
    const problems = await problemsOf(load());
    expect(problems).toMatchObject([{ line: 5, column: 9, path: 'http.port', message: 'expected a number, got "9000"' }]);
  });

  test('never lets a value inject YAML', async () => {
    await write(config('redis:\n  keyPrefix: ${PREFIX}\n  url: ${REDIS_URL}\n'));
    env = { PREFIX: 'a: b', REDIS_URL: 'redis://:pa#ss@cache:6379 # not a comment' };
    const loaded = await load();
    expect(loaded.config.redis.keyPrefix).toBe('a: b');
    expect(loaded.config.redis.url).toBe('redis://:pa#ss@cache:6379 # not a comment');
  });

  test('an empty default is an empty string, not null', async () => {
    await write(config('redis:\n  keyPrefix: ${PREFIX:-}\n'));
    expect((await load()).config.redis.keyPrefix).toBe('');
  });

  test('$${ is a literal ${', async () => {
    await write(config('redis:\n  keyPrefix: "$${APP}:"\n'));
    env = { APP: 'shop' };
    expect((await load()).config.redis.keyPrefix).toBe('${APP}:');
  });

  test('an unset variable names file, line, column, path and variable', async () => {
    await write(config('redis:\n  url: redis://${REDIS_HOST}:6379\n'));
    const problems = await problemsOf(load());
    expect(problems).toEqual([
      {
        file: path.join(dir, 'c.yaml'),
        line: 5,
        column: 8,
        path: 'redis.url',
        message: 'environment variable REDIS_HOST is not set (give a default with ${REDIS_HOST:-value})',
        severity: 'error',
      },
    ]);
  });

  test('a bad reference is an error', async () => {
    await write(config('redis:\n  keyPrefix: ${NOT-A-NAME}\n  url: ${REDIS_URL\n'));
    const problems = await problemsOf(load());
    expect(problems.map((p) => [p.line, p.path, p.message])).toEqual([
      [5, 'redis.keyPrefix', '"${NOT-A-NAME}" is not a valid reference: write ${NAME} or ${NAME:-default}'],
      [6, 'redis.url', 'unclosed "${" (write "$${" for a literal "${")'],
    ]);
  });

  test('mapping files are not substituted', async () => {
    await write({
      'c.yaml': 'source: { kind: postgres, url: postgres://db/x }\nmappings: m\n',
      'm/users.yaml': 'rules:\n  - table: users\n    invalidate: ["user:${id}"]\n',
    });
    const loaded = await loadConfig(path.join(dir, 'c.yaml'), { id: 'oops' });
    expect(loaded.rules.byTable.get('public.users')?.[0]?.actions.invalidate[0]?.source).toBe('user:${id}');
  });

  test('expandEnv on its own', () => {
    expect(expandEnv('a${X}b${Y:-y}c$${Z}$d', { X: '1' })).toEqual({ ok: true, text: 'a1byc${Z}$d' });
    expect(expandEnv('${X}', {})).toMatchObject({ ok: false });
  });
});

describe('messages', () => {
  test('paths render as written', () => {
    expect(formatPath(['rules', 2, 'invalidate', 0])).toBe('rules[2].invalidate[0]');
    expect(formatPath([])).toBe('');
    expect(formatPath(['a key', 'b'])).toBe('["a key"].b');
  });

  test('a missing config file says where it looked and mentions --config', async () => {
    const file = path.join(dir, 'cdc-invalidator.yaml');
    const err = await loadConfig(file, {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).message).toBe(`${file}: config file not found (give its path with --config FILE)`);
    expect((err as ConfigError).code).toBe('CONFIG_INVALID');
  });

  test('a config directory is not a config file', async () => {
    const problems = await problemsOf(loadConfig(dir, {}));
    expect(problems[0]?.message).toBe('config file is a directory, not a file (give its path with --config FILE)');
  });

  test('no value under a url is ever echoed', async () => {
    await write({
      'c.yaml': 'source:\n  kind: postgres\n  url: [postgres://u:hunter2@db]\nredis:\n  url: 6379\nmappings: m\n',
      'm/users.yaml': USERS,
    });
    const err = (await loadConfig(path.join(dir, 'c.yaml'), {}).catch((e: unknown) => e)) as ConfigError;
    expect(err.problems.map((p) => p.message)).toEqual(['expected a string, got a list', 'expected a string, got a number']);
    expect(err.message).not.toMatch(/hunter2|6379/);
  });

  test('a YAML syntax error does not quote the offending text', async () => {
    await write({ 'c.yaml': 'source:\n  kind: postgres\n  url: postgres://u:hunter2@db\n   slot: x\nmappings: m\n' });
    const err = (await loadConfig(path.join(dir, 'c.yaml'), {}).catch((e: unknown) => e)) as ConfigError;
    expect(err.problems).toHaveLength(1);
    expect(err.message).toMatch(/YAML syntax error/);
    expect(err.message).not.toMatch(/hunter2/);
    expect(err.message).not.toMatch(/\n\s+at /);
  });

  test('problems across files come in one error, in file then line order', async () => {
    await write({
      'c.yaml': 'source: { kind: postgres, url: postgres://db/x }\nmappings: m\nlogg: {}\n',
      'm/b.yaml': 'rules:\n  - table: users\n    invalidate: ["user:{id"]\n',
      'm/a.yaml': 'rules:\n  - table: users\n    on: [upsert]\n    bump: ["v:{id"]\n',
    });
    const err = (await loadConfig(path.join(dir, 'c.yaml'), {}).catch((e: unknown) => e)) as ConfigError;
    expect(err.message.split('\n')).toEqual([
      `${dir}/c.yaml:3:1: logg: unknown key "logg" (did you mean "log"?)`,
      `${dir}/m/a.yaml:3:10: rules[0].on[0]: expected one of insert, update, delete, truncate, got "upsert" (did you mean "insert"?)`,
      `${dir}/m/b.yaml:3:18: rules[0].invalidate[0]: unclosed "{" at character 6 of "user:{id" (write "{{" for a literal brace)`,
    ]);
  });
});
