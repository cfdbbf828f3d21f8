// Keeps the shipped examples honest: the example config and mappings validate with the built CLI, the
// `explain` outputs pasted into README.md are what the CLI prints, and every host path docker-compose.yml
// mounts exists where the worker's config expects it. Needs `npm run build` first (npm test does it).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { servicesMissing, sharedPostgres, uniqueName } from '../harness/services.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'dist', 'cli.js');
const run = promisify(execFile);

/**
 * The demo database of examples/schema.sql, on the test's own Postgres: explain runs the lookups
 * of the comments rule against it, exactly as the README's examples show.
 */
let databaseUrl = 'postgres://postgres@127.0.0.1:1/app';

/** Runs the built CLI from the repository root; resolves with the exit code instead of throwing. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl };
  delete env['REDIS_URL'];
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { cwd: ROOT, env });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** Splits a shell command line with single- and double-quoted words (no escapes, no expansion). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (const m of line.matchAll(re)) words.push(m[1] ?? m[2] ?? m[3]!);
  return words;
}

interface ConsoleExample {
  command: string;
  output: string;
}

/** ```console blocks of README.md: a `$ command` line, then its output. */
function consoleExamples(markdown: string): ConsoleExample[] {
  const blocks = [...markdown.matchAll(/^```console\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
  return blocks.map((block) => {
    const [first, ...rest] = block.split('\n');
    return { command: first!.replace(/^\$ /, ''), output: rest.join('\n') };
  });
}

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} not found: run "npm run build" first`);
  if (servicesMissing('postgres')) return;
  const pg = await sharedPostgres();
  const name = uniqueName('app');
  databaseUrl = await pg.createDatabase(name);
  await pg.query(readFileSync(join(ROOT, 'examples', 'schema.sql'), 'utf8'), [], name);
});

describe('example config and mappings', () => {
  it('validate succeeds on the Debezium example (examples/debezium/)', async () => {
    const result = await cli(['validate', '--config', 'examples/debezium/cdc-invalidator.yaml']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('validate succeeds on the memcached example (examples/memcached/)', async () => {
    const result = await cli(['validate', '--config', 'examples/memcached/cdc-invalidator.yaml']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
  });

  it('validate succeeds on the query-rule example (examples/query-rules/)', async () => {
    const result = await cli(['validate', '--config', 'examples/query-rules/cdc-invalidator.yaml']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/1 mapping file\(s\), 8 rule\(s\) on 2 table\(s\)\n$/);
  });

  it('validate succeeds on cdc-invalidator.yaml', async () => {
    const result = await cli(['validate', '--config', 'cdc-invalidator.yaml']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^ok: .*cdc-invalidator\.yaml, 2 mapping file\(s\), 2 rule\(s\) on 2 table\(s\)\n$/);
  });

  it('maps exactly the tables examples/schema.sql creates', () => {
    const sql = readFileSync(join(ROOT, 'examples', 'schema.sql'), 'utf8');
    const created = [...sql.matchAll(/^CREATE TABLE (\w+)/gim)].map((m) => m[1]!).sort();
    const full = [...sql.matchAll(/^ALTER TABLE (\w+) REPLICA IDENTITY FULL;/gim)].map((m) => m[1]!).sort();
    const mapped = ['comments', 'users'];
    expect(created).toEqual(mapped);
    // Both tables' rules render non-key columns of old rows.
    expect(full).toEqual(mapped);
  });
});

describe('README.md', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const explains = consoleExamples(readme).filter((e) => e.command.startsWith('node dist/cli.js explain '));

  it('shows explain examples', () => {
    expect(explains.length).toBeGreaterThanOrEqual(3);
  });

  const named = explains.map((e, i) => {
    const words = shellWords(e.command);
    const flag = (f: string) => words[words.indexOf(f) + 1];
    return [words.includes('--rule') ? `#${i + 1}: --rule ${flag('--rule')}` : `#${i + 1}: ${flag('--op')} on ${flag('--table')}`, e] as const;
  });

  it.each(named)('explain example %s prints what the README shows', async (_name, example) => {
    const [, , ...args] = shellWords(example.command);
    const result = await cli(args);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(example.output);
  });
});

describe('docker-compose.yml', () => {
  type Service = {
    build?: unknown;
    image?: string;
    command?: unknown;
    environment?: Record<string, string>;
    volumes?: string[];
    depends_on?: Record<string, { condition?: string }>;
    healthcheck?: { test?: unknown };
  };
  const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as { services: Record<string, Service> };
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');

  /** `host:container[:mode]` bind mounts (named volumes have no path on the host side). */
  function binds(service: Service): Array<{ host: string; container: string }> {
    return (service.volumes ?? []).flatMap((v) => {
      const [host, container] = v.split(':');
      if (host === undefined || container === undefined || !(host.startsWith('.') || isAbsolute(host))) return [];
      return [{ host: resolve(ROOT, host), container }];
    });
  }

  it('runs the Debezium version the tests run, and registers its connector idempotently', () => {
    const pom = readFileSync(join(ROOT, 'test', 'kafka', 'pom.xml'), 'utf8');
    const debezium = /<debezium\.version>([^<]+)<\/debezium\.version>/.exec(pom)![1]!;
    for (const name of ['connect', 'register-connector']) {
      expect(compose.services[name]!.image, name).toBe(`quay.io/debezium/connect:${debezium}`);
    }
    // PUT /connectors/<name>/config creates or updates; POST /connectors fails (409) on a second `up`.
    const register = compose.services['register-connector'] as Service & { entrypoint?: string[] };
    const call = register.entrypoint!.join(' ');
    expect(call).toMatch(/-X PUT .*http:\/\/connect:8083\/connectors\/app\/config$/);
    const body = /--data @(\S+)/.exec(call)![1]!;
    const file = binds(register).find((b) => b.container === body)!.host;
    const config = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    expect(config['connector.class']).toBe('io.debezium.connector.postgresql.PostgresConnector');
    expect(config['name']).toBeUndefined();
  });

  it('the mariadb profile: a row-based binary log, the same Connect, the MariaDB connector registered idempotently', () => {
    const mariadb = compose.services['mariadb']!;
    expect(mariadb.command).toEqual(expect.arrayContaining(['--binlog-format=ROW', '--binlog-row-image=FULL']));
    expect(binds(mariadb).find((b) => b.container.startsWith('/docker-entrypoint-initdb.d/'))?.host).toBe(join(ROOT, 'examples', 'mariadb', 'schema.sql'));
    const register = compose.services['register-mariadb-connector'] as Service & { entrypoint?: string[] };
    expect(register.image).toBe(compose.services['connect']!.image);
    const call = register.entrypoint!.join(' ');
    expect(call).toMatch(/-X PUT .*http:\/\/connect:8083\/connectors\/shop\/config$/);
    const config = JSON.parse(readFileSync(binds(register).find((b) => b.container === /--data @(\S+)/.exec(call)![1]!)!.host, 'utf8')) as Record<string, string>;
    expect(config['connector.class']).toBe('io.debezium.connector.mariadb.MariaDbConnector');
    expect(config['value.converter.schemas.enable']).toBe('true');
    expect(config['skipped.operations']).toBe('none');
    const worker = compose.services['worker-mariadb']!;
    const workerConfig = parse(readFileSync(binds(worker).find((b) => b.container === '/etc/cdc-invalidator/cdc-invalidator.yaml')!.host, 'utf8')) as { source: { topics: string[] } };
    expect(workerConfig.source.topics).toEqual([`${config['topic.prefix']}.app.users`, `${config['topic.prefix']}.app.comments`]);
    expect(binds(worker).find((b) => b.container === '/etc/cdc-invalidator/mappings')?.host).toBe(join(ROOT, 'examples', 'mariadb', 'mappings'));
  });

  it('mounts files that exist', () => {
    for (const [name, service] of Object.entries(compose.services)) {
      for (const bind of binds(service)) {
        expect(existsSync(bind.host), `${name}: ${bind.host} is mounted but does not exist`).toBe(true);
      }
    }
  });

  it('mounts the config where the image runs it, and its mappings where the config points', () => {
    const worker = compose.services['worker']!;
    const cmd = /^CMD (\[.*\])$/m.exec(dockerfile);
    expect(cmd, 'Dockerfile has a CMD in exec form').not.toBeNull();
    const args = JSON.parse(cmd![1]!) as string[];
    const configInContainer = args[args.indexOf('--config') + 1]!;

    const configBind = binds(worker).find((b) => b.container === configInContainer);
    expect(configBind, `worker mounts a config at ${configInContainer}`).toBeDefined();
    expect(statSync(configBind!.host).isFile()).toBe(true);

    const config = parse(readFileSync(configBind!.host, 'utf8')) as { mappings: string };
    const mappingsInContainer = posix.resolve(posix.dirname(configInContainer), config.mappings);
    const mappingsBind = binds(worker).find((b) => b.container === mappingsInContainer);
    expect(mappingsBind, `worker mounts the mappings at ${mappingsInContainer}`).toBeDefined();
    expect(mappingsBind!.host).toBe(resolve(dirname(configBind!.host), config.mappings));
  });

  it('runs the demo schema on a logical-WAL postgres, and waits for healthy services', () => {
    const postgres = compose.services['postgres']!;
    expect(String(postgres.command)).toContain('wal_level=logical');
    const init = binds(postgres).find((b) => b.container.startsWith('/docker-entrypoint-initdb.d/'));
    expect(init?.host).toBe(join(ROOT, 'examples', 'schema.sql'));

    const worker = compose.services['worker']!;
    expect(worker.environment?.['DATABASE_URL']).toMatch(/@postgres:5432\//);
    expect(worker.environment?.['REDIS_URL']).toMatch(/^redis:\/\/redis:6379/);
    for (const dependency of ['postgres', 'redis']) {
      expect(worker.depends_on?.[dependency]?.condition).toBe('service_healthy');
      expect(compose.services[dependency]?.healthcheck?.test).toBeDefined();
    }
  });

  it('builds an image that copies only files that exist and are not excluded from the context', () => {
    const ignored = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const sources = m[1]!.trim().split(/\s+/).slice(0, -1);
      for (const source of sources) {
        expect(existsSync(join(ROOT, source)), `Dockerfile copies ${source}, which does not exist`).toBe(true);
        expect(ignored, `Dockerfile copies ${source}, which .dockerignore excludes`).not.toContain(source);
      }
    }
  });
});
