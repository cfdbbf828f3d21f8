// check's verdicts for a Debezium source, from what the last messages of the topics show.
import { describe, expect, it } from 'vitest';
import { debeziumChecks } from '../../src/commands/check/debezium-checks.js';
import { compileRules, type RuleSpec } from '../../src/core/rules.js';
import type { SampledMessage, TopicSamples } from '../../src/lib/kafka-topics.js';

const rules = (specs: RuleSpec[]) => {
  const { rules: set, problems } = compileRules([{ file: 'rules.yaml', rules: specs }]);
  expect(problems).toEqual([]);
  return set;
};
const event = (connector: string, namespace: string, table: string, envelope = true): Buffer => {
  // PostgreSQL's and SQL Server's events name a schema (SQL Server's a database too); MySQL's and MariaDB's a database.
  const source = connector === 'mysql' || connector === 'mariadb' ? { connector, db: namespace, table } : { connector, db: 'app', schema: namespace, table };
  const payload = { before: null, after: { id: 1 }, source, op: 'c' };
  return Buffer.from(JSON.stringify(envelope ? { schema: { type: 'struct', fields: [] }, payload } : payload));
};
const message = (topic: string, value: Buffer | null, offset = 0): SampledMessage => ({ topic, partition: 0, offset: String(offset), key: null, value });
const samples = (topics: Array<[string, Array<Buffer | null>]>, missing: string[] = []): TopicSamples => ({
  brokers: 1,
  topics: topics.map(([topic, values]) => ({ topic, partitions: 1, held: BigInt(values.length), messages: values.map((v, i) => message(topic, v, i)) })),
  missing,
  incomplete: 0,
});
const text = (lines: ReturnType<typeof debeziumChecks>) => lines.map((l) => `${l.status} ${l.text}${l.fix === undefined ? '' : ` | ${l.fix}`}`);

describe('debeziumChecks', () => {
  it('a mapped table of each connector: ok, with the number of rules', () => {
    const set = rules([
      { table: 'shop.users', invalidate: ['user:{id}'] },
      { table: 'shop.users', invalidate: ['u:{id}'] },
      { table: 'public.orders', invalidate: ['order:{id}'] },
    ]);
    const lines = debeziumChecks(samples([['m.shop.users', [event('mariadb', 'shop', 'users'), null]], ['p.public.orders', [event('postgresql', 'public', 'orders', false)]]]), set, undefined);
    expect(text(lines)).toEqual([
      'ok kafka: 1 broker reachable',
      "ok topic m.shop.users: Debezium's mariadb connector, table shop.users, mapped by 2 rules",
      "ok topic p.public.orders: Debezium's postgresql connector, table public.orders, mapped by 1 rule",
    ]);
  });

  it('a table named without its database: a warning naming both', () => {
    const lines = debeziumChecks(samples([['m.shop.users', [event('mysql', 'shop', 'users')]]]), rules([{ table: 'users', invalidate: ['user:{id}'] }]), undefined);
    expect(text(lines).slice(1)).toEqual([
      "warn topic m.shop.users: Debezium's mysql connector, table shop.users, which no rule maps: its changes are ignored | the rules name public.users; events name the table shop.users (MySQL and MariaDB: database.table; a name without one means public.)",
      "warn table public.users: mapped by the rules, and no event of it in the topics' last messages | check that the connector captures it (table.include.list) and that source.topics or source.topicPattern covers its topic; on MySQL and MariaDB name tables database.table",
    ]);
  });

  it('MySQL or MariaDB events without the schema envelope fail; PostgreSQL ones do not', () => {
    const lines = debeziumChecks(samples([['m.shop.t', [event('mariadb', 'shop', 't', false)]]]), rules([{ table: 'shop.t', invalidate: ['t:{id}'] }]), undefined);
    expect(lines.filter((l) => l.status === 'fail').map((l) => l.text)).toEqual([
      'topic m.shop.t: mariadb events without the schema envelope: their values cannot be read exactly, so every key is unknown',
    ]);
  });

  it('unreadable messages, a connector not read, a missing or empty topic, a pattern matching nothing', () => {
    const set = rules([{ table: 'dbo.t', invalidate: ['t:{id}'] }]);
    const lines = debeziumChecks(samples([['x', [Buffer.from('not json'), Buffer.from('{}')]], ['s.dbo.t', [event('sqlserver', 'dbo', 't')]], ['empty', []]], ['later']), set, undefined);
    const t = text(lines);
    expect(t.find((l) => l.startsWith('fail topic x:'))).toMatch(/^fail topic x: 2 messages the worker cannot read: value is not JSON: .* \(partition 0, offset 0\) \| these become dead letters/);
    expect(t.some((l) => l.startsWith("fail topic s.dbo.t: events of Debezium's sqlserver connector"))).toBe(true);
    expect(t.some((l) => l.startsWith('warn topic empty: empty, nothing to check yet'))).toBe(true);
    expect(t.some((l) => l.startsWith('warn topic later: does not exist yet'))).toBe(true);
    const none = debeziumChecks({ brokers: 3, topics: [], missing: [], incomplete: 0 }, set, '^app\\.');
    expect(text(none)[1]).toMatch(/^fail topicPattern "\^app\\\\\." *: matches no topic/);
  });

  it('tombstones, heartbeats, transaction markers and schema changes alone: nothing to judge', () => {
    const other = [null, Buffer.from('{"ts_ms":1}'), Buffer.from('{"status":"BEGIN","id":"0-1-9"}'), Buffer.from('{"source":{},"tableChanges":[]}')];
    const lines = debeziumChecks(samples([['m', other]]), rules([{ table: 'shop.t', invalidate: ['t:{id}'] }]), undefined);
    expect(text(lines)[1]).toBe('ok topic m: no change event among its last messages (tombstones, heartbeats or schema changes)');
  });
});
