// Hand-written facts for the unit tests of `check`: a healthy database that each case bends.
import { expect } from 'vitest';
import type { PostgresReached, RedisReached, RelationFacts, TableFacts } from '../../src/commands/check/facts.js';
import type { CheckLine } from '../../src/commands/check/report.js';
import { compileRules, type RuleSet, type RuleSpec } from '../../src/core/rules.js';

export const FILE = 'mappings/app.yaml';

export function compile(specs: RuleSpec[]): RuleSet {
  const { rules, problems } = compileRules([{ file: FILE, rules: specs }]);
  expect(problems.filter((p) => p.severity !== 'warning')).toEqual([]);
  return rules;
}

export function relation(overrides: Partial<RelationFacts> = {}): RelationFacts {
  return {
    oid: 16384,
    sql: 'public.users',
    kind: 'table',
    owner: 'app',
    owned: true,
    replicaIdentity: 'default',
    primaryKey: ['id'],
    identityIndex: null,
    columns: ['id', 'name', 'email'].map((name) => ({ name, generated: false })),
    partitions: [],
    ...overrides,
  };
}

export function table(name: string, rel: RelationFacts | null = relation(), similar: TableFacts['similar'] = []): TableFacts {
  const [schema, tableName] = name.split('.') as [string, string];
  return { schema, table: tableName, relation: rel, similar };
}

export function database(overrides: Partial<PostgresReached> = {}): PostgresReached {
  return {
    reachable: true,
    target: 'cdc@db.internal:5432/app',
    server: {
      version: '15.8',
      versionNum: 150008,
      database: 'app',
      databaseSql: 'app',
      inRecovery: false,
      walLevel: 'logical',
      walLevelPendingRestart: false,
      maxReplicationSlots: 10,
      maxWalSenders: 10,
      maxSlotWalKeepSizeMb: 10240,
      slotsInUse: 1,
      walSendersInUse: 0,
    },
    publicationSql: 'cdc_invalidator',
    role: { name: 'cdc', sql: 'cdc', superuser: false, replication: true, createOnDatabase: true },
    slot: null,
    publication: null,
    tables: [table('public.users')],
    replication: { ok: true },
    lookups: [],
    ...overrides,
  };
}

export function redis(overrides: Partial<RedisReached> = {}): RedisReached {
  return {
    reachable: true,
    target: '127.0.0.1:6379',
    version: '7.2.4',
    role: 'master',
    clusterEnabled: false,
    replicas: 0,
    probeKey: 'app:cdc-invalidator:check:abc123',
    write: { ok: true },
    script: { ok: true },
    ...overrides,
  };
}

/** The lines as `STATUS text` (and ` | fix`), for compact expectations. */
export function render(lines: CheckLine[]): string[] {
  return lines.map((l) => `${l.status} ${l.text}${l.fix === undefined ? '' : ` | ${l.fix}`}`);
}

export function problems(lines: CheckLine[]): string[] {
  return render(lines.filter((l) => l.status !== 'ok'));
}
