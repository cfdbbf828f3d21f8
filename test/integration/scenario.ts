// A throwaway database, Redis key prefix, config and mapping files for one test, and the worker run
// in-process from those files exactly as `cdc-invalidator run` wires it.
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import { createLogger, silentLogger } from '../../src/log.js';
import { buildWorker, type Assembly } from '../../src/main.js';
import { createTestDatabase, sharedPostgres, sharedRedis, uniqueName } from '../harness/services.js';
import { waitFor } from '../harness/wait-for.js';

/** A rule on the sentinel table is added to every mapping: see barrier(). */
const SENTINEL_RULE = `
  - table: public.cdc_sentinel
    invalidate: ["sentinel:{id}"]
`;

export interface ScenarioOptions {
  /** SQL run in the new database before the worker starts. */
  schema: string;
  /** The `rules:` list items, as YAML text (each starting with "  - table:"). */
  rules: string;
  /** Extra YAML appended to the config file. */
  config?: string;
  /** Extra YAML lines inside the config's `redis:` section, each indented by two spaces. */
  redis?: string;
  slot?: string;
}

export interface Scenario {
  db: { name: string; url: string };
  prefix: string;
  slot: string;
  publication: string;
  dir: string;
  configPath: string;
  redis: Redis;
  sql<R extends Record<string, unknown> = Record<string, unknown>>(text: string, params?: unknown[]): Promise<R[]>;
  /** Sets each key (under the prefix) to a value, as an application filling its cache would. */
  seed(...keys: string[]): Promise<void>;
  exists(key: string): Promise<boolean>;
  get(key: string): Promise<string | null>;
  /** Waits until every change committed before this call has been applied to Redis. */
  barrier(): Promise<void>;
  startWorker(options?: { slot?: string; configPath?: string }): Promise<Assembly>;
  deadLetters(): Promise<Array<Record<string, string>>>;
  cleanup(): Promise<void>;
}

let sentinelId = 0;

export async function createScenario(options: ScenarioOptions): Promise<Scenario> {
  const pg = await sharedPostgres();
  const redisServer = await sharedRedis();
  const db = await createTestDatabase('it');
  await pg.query(`${options.schema}; CREATE TABLE public.cdc_sentinel (id int PRIMARY KEY);`, [], db.name);
  const prefix = `${uniqueName('k')}:`;
  const slot = options.slot ?? uniqueName('slot');
  const publication = uniqueName('pub');
  const dir = mkdtempSync(join(tmpdir(), 'cdc-it-'));
  mkdirSync(join(dir, 'mappings'));
  writeFileSync(join(dir, 'mappings', 'rules.yaml'), `rules:\n${options.rules}\n${SENTINEL_RULE}`);
  const configPath = join(dir, 'cdc-invalidator.yaml');
  writeFileSync(configPath, configText({ url: db.url, slot, publication, redisUrl: redisServer.url(), prefix, extra: options.config, redis: options.redis }));
  const redis = new Redis(redisServer.url(), { lazyConnect: false, maxRetriesPerRequest: 1 });
  // Tests stop and restart Redis on purpose; commands after that fail loudly enough.
  redis.on('error', () => undefined);
  const running: Assembly[] = [];

  const scenario: Scenario = {
    db,
    prefix,
    slot,
    publication,
    dir,
    configPath,
    redis,
    sql: (text, params = []) => pg.query(text, params, db.name),
    async seed(...keys) {
      if (keys.length === 0) return;
      const multi = redis.multi();
      for (const key of keys) multi.set(prefix + key, 'cached');
      await multi.exec();
    },
    async exists(key) {
      return (await redis.exists(prefix + key)) === 1;
    },
    get: (key) => redis.get(prefix + key),
    async barrier() {
      const id = ++sentinelId;
      await scenario.seed(`sentinel:${id}`);
      await scenario.sql('INSERT INTO public.cdc_sentinel (id) VALUES ($1)', [id]);
      await waitFor(async () => !(await scenario.exists(`sentinel:${id}`)), {
        timeoutMs: 30_000,
        message: 'the worker did not apply the sentinel change',
      });
    },
    async startWorker(startOptions = {}) {
      let path = startOptions.configPath ?? configPath;
      if (startOptions.slot !== undefined) {
        path = join(dir, `config-${startOptions.slot}.yaml`);
        writeFileSync(path, configText({ url: db.url, slot: startOptions.slot, publication, redisUrl: redisServer.url(), prefix, extra: options.config, redis: options.redis }));
      }
      const loaded = await loadConfig(path, {});
      const log = process.env['TEST_LOG'] ? createLogger({ level: process.env['TEST_LOG'] }) : silentLogger();
      const assembly = buildWorker(loaded, log);
      running.push(assembly);
      await assembly.worker.start();
      return assembly;
    },
    async deadLetters() {
      const entries = await redis.xrange(`${prefix}cdc-invalidator:dead-letters`, '-', '+');
      return entries.map(([, fields]) => {
        const out: Record<string, string> = {};
        for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!;
        return out;
      });
    },
    async cleanup() {
      for (const a of running) {
        await a.worker.stop();
        await a.http.close();
      }
      redis.disconnect();
      // An abandoned slot holds WAL for ever.
      await pg
        .query(
          `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active`,
          [db.name],
        )
        .catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return scenario;
}

function configText(o: {
  url: string;
  slot: string;
  publication: string;
  redisUrl: string;
  prefix: string;
  extra?: string | undefined;
  redis?: string | undefined;
}): string {
  return `source:
  kind: postgres
  url: "${o.url}"
  slot: ${o.slot}
  publication: ${o.publication}
  heartbeatSeconds: 1
redis:
  url: "${o.redisUrl}"
  keyPrefix: "${o.prefix}"
${o.redis ?? ''}mappings: ./mappings
${o.extra?.includes('http:') ? '' : 'http:\n  port: 0\n'}${o.extra ?? ''}
`;
}
