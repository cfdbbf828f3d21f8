import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { parseDebeziumRecord, type KafkaRecord } from '../../src/sources/debezium/event-parser.js';
import { DeclaredIdentities, weaker, type ReplicaIdentity, type TableInfo } from '../../src/sources/debezium/identity.js';
import { textValue } from '../../src/sources/debezium/values.js';

const source = { version: '2.7.0.Final', connector: 'postgresql', name: 'app', ts_ms: 1700000000123, snapshot: 'false', db: 'app', schema: 'public', table: 'users', txId: 750, lsn: 24023128 };

function record(value: unknown, key: unknown = { id: 1 }, offset = '7', topic = 'app.public.users'): KafkaRecord {
  return {
    topic,
    partition: 0,
    offset,
    key: key === null ? null : Buffer.from(JSON.stringify(key)),
    value: value === null ? null : Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)),
  };
}

const opts = { snapshotInvalidates: false };
const FULL: TableInfo = { identity: { kind: 'full' } };
const withIdentity = (identity: ReplicaIdentity) => ({ snapshotInvalidates: false, table: (): TableInfo => ({ identity }) });

describe('parseDebeziumRecord', () => {
  it('an insert without the schema envelope', () => {
    const parsed = parseDebeziumRecord(record({ before: null, after: { id: 1, email: 'a@x.io', active: true }, source, op: 'c', ts_ms: 1 }), opts);
    expect(parsed).toEqual({
      kind: 'change',
      commitTimeMs: 1700000000123,
      change: {
        schema: 'public',
        table: 'users',
        op: 'insert',
        before: null,
        after: { id: '1', email: 'a@x.io', active: 'true' },
        keyColumns: ['id'],
        version: null,
        position: 'app.public.users[0]@7',
      },
    });
  });

  it('keeps int8 digits past 2^53 exactly', () => {
    const parsed = parseDebeziumRecord(record('{"before":null,"after":{"id":9007199254740993},"source":{"schema":"public","table":"t"},"op":"c"}'), opts);
    expect(parsed.kind === 'change' && parsed.change.after).toEqual({ id: '9007199254740993' });
  });

  it('an update with a full old row (REPLICA IDENTITY FULL)', () => {
    const parsed = parseDebeziumRecord(record({ before: { id: 1, email: 'a@x.io' }, after: { id: 1, email: 'b@x.io' }, source, op: 'u' }), { ...opts, table: () => FULL });
    expect(parsed.kind === 'change' && [parsed.change.op, parsed.change.before, parsed.change.after]).toEqual(['update', { id: '1', email: 'a@x.io' }, { id: '1', email: 'b@x.io' }]);
  });

  it('an update without "before" (REPLICA IDENTITY DEFAULT): old key from the new row, the rest unknown', () => {
    const parsed = parseDebeziumRecord(record({ before: null, after: { id: 1, email: 'b@x.io' }, source, op: 'u' }), opts);
    expect(parsed.kind === 'change' && { ...parsed.change.before }).toEqual({ id: '1' });
  });

  it('a delete whose old row is only the key with nulls: the nulls are unknown, not NULL', () => {
    const parsed = parseDebeziumRecord(record({ before: { id: 1, email: null }, after: null, source, op: 'd' }), opts);
    expect(parsed.kind === 'change' && { ...parsed.change.before }).toEqual({ id: '1' });
  });

  it('a delete with a full old row keeps its real NULLs', () => {
    const parsed = parseDebeziumRecord(record({ before: { id: 1, email: 'a@x.io', bio: null }, after: null, source, op: 'd' }), { ...opts, table: () => FULL });
    expect(parsed.kind === 'change' && parsed.change.before).toEqual({ id: '1', email: 'a@x.io', bio: null });
  });

  it('the unavailable-value placeholder (unchanged TOAST) is unknown', () => {
    const parsed = parseDebeziumRecord(record({ before: null, after: { id: 1, body: '__debezium_unavailable_value' }, source, op: 'u' }), opts);
    expect(parsed.kind === 'change' && { ...parsed.change.after }).toEqual({ id: '1' });
  });

  it('truncate, tombstone, heartbeat, message, snapshot', () => {
    expect(parseDebeziumRecord(record({ before: null, after: null, source, op: 't' }), opts)).toMatchObject({ kind: 'change', change: { op: 'truncate', before: null, after: null } });
    expect(parseDebeziumRecord(record(null), opts)).toEqual({ kind: 'skip', why: 'tombstone' });
    expect(parseDebeziumRecord(record({ ts_ms: 5 }, { serverName: 'app' }, '1', '__debezium-heartbeat.app'), opts)).toEqual({ kind: 'skip', why: 'heartbeat' });
    expect(parseDebeziumRecord(record({ op: 'm', source }), opts)).toEqual({ kind: 'skip', why: 'message' });
    const snap = record({ before: null, after: { id: 1 }, source, op: 'r' });
    expect(parseDebeziumRecord(snap, opts)).toEqual({ kind: 'skip', why: 'snapshot' });
    expect(parseDebeziumRecord(snap, { snapshotInvalidates: true })).toMatchObject({ kind: 'change', change: { op: 'insert' } });
  });

  it('the schema envelope: logical types back to PostgreSQL text form', () => {
    const value = {
      schema: {
        type: 'struct',
        fields: [
          {
            field: 'after',
            type: 'struct',
            fields: [
              { field: 'id', type: 'int64' },
              { field: 'at', type: 'int64', name: 'io.debezium.time.MicroTimestamp' },
              { field: 'day', type: 'int32', name: 'io.debezium.time.Date' },
              { field: 'atz', type: 'string', name: 'io.debezium.time.ZonedTimestamp' },
              { field: 'blob', type: 'bytes' },
              { field: 'n', type: 'struct', name: 'io.debezium.data.VariableScaleDecimal' },
              { field: 'price', type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', version: 1, parameters: { scale: '2', 'connect.decimal.precision': '12' } },
            ],
          },
        ],
      },
      payload: {
        before: null,
        after: { id: 5, at: 1709251199500000, day: 19782, atz: '2024-02-29T23:59:59.5Z', blob: 'AQI=', n: { scale: 2, value: 'BOI=' }, price: 'AdTA' },
        source,
        op: 'c',
      },
    };
    const parsed = parseDebeziumRecord(record(value, { schema: { type: 'struct' }, payload: { id: 5 } }), opts);
    expect(parsed.kind === 'change' && parsed.change.after).toEqual({
      id: '5',
      at: '2024-02-29 23:59:59.5',
      day: '2024-02-29',
      atz: '2024-02-29 23:59:59.5+00',
      blob: '\\x0102',
      price: '1200.00',
    });
    expect(parsed.kind === 'change' && parsed.change.keyColumns).toEqual(['id']);
  });

  it.each([
    ['not JSON', '{nope', /value is not JSON/],
    ['not an object', '[1]', /not a JSON object/],
    ['no op', { before: null, after: {}, source }, /unknown or missing "op"/],
    ['an empty object', {}, /not a Debezium event/],
    ['a heartbeat shape on a table topic', { ts_ms: 5 }, /not a Debezium event/],
    ['an unrelated object', { hello: 'world' }, /not a Debezium event/],
    ['JSON null', 'null', /not a JSON object/],
    ['a JSON string', '"c"', /not a JSON object/],
    ['unknown op', { op: 'x', source }, /unknown or missing "op": "x"/],
    ['no source', { before: null, after: { id: 1 }, op: 'c' }, /^missing source$/],
    ['no source.schema', { before: null, after: { id: 1 }, op: 'c', source: { connector: 'postgresql', table: 'users' } }, /missing source.schema or source.table/],
    [
      'a MariaDB event without source.db',
      { before: null, after: { id: 1 }, op: 'c', source: { connector: 'mariadb', table: 'users', file: 'mysql-bin.000003', pos: 154 } },
      /^an event of Debezium's mariadb connector without source.db or source.table$/,
    ],
    [
      'an event of a connector not read',
      { before: null, after: { id: 1 }, op: 'c', source: { connector: 'sqlserver', db: 'app', schema: 'dbo', table: 'users' } },
      /^an event of Debezium's sqlserver connector: only the PostgreSQL, MySQL and MariaDB connectors' events are read$/,
    ],
    ['insert without after', { before: null, after: null, source, op: 'c' }, /insert without "after"/],
    ['after not an object', { before: null, after: 3, source, op: 'c' }, /not an object or null/],
  ])('a malformed event (%s) is reported, not thrown', (_name, value, reason) => {
    const parsed = parseDebeziumRecord(record(value), opts);
    expect(parsed.kind).toBe('malformed');
    expect(parsed.kind === 'malformed' && parsed.reason).toMatch(reason);
  });
});

describe('debezium values', () => {
  it('booleans, strings and null', () => {
    expect(textValue(false, undefined)).toBe('false');
    expect(textValue('x', undefined)).toBe('x');
    expect(textValue(null, undefined)).toBeNull();
    expect(textValue({ a: 1 }, undefined)).toBeUndefined();
  });
});

describe('old rows under each replica identity', () => {
  // What Debezium 3.0 sends under REPLICA IDENTITY DEFAULT: the key, and for every other column a
  // stand-in it made up ('' for a NOT NULL text, false, 0, the default), never what the row held.
  const filled = { id: 1, email: '', active: false, visits: 0, bio: null };
  const PK: ReplicaIdentity = { kind: 'columns', columns: ['id'] };
  const CASES: Array<[string, ReplicaIdentity, string, unknown, unknown, Record<string, string | null>]> = [
    ['DEFAULT delete: only the key, never the filler', PK, 'd', filled, null, { id: '1' }],
    ['DEFAULT update without "before": the key from the new row', PK, 'u', null, { id: 1, email: 'b@x.io', active: true }, { id: '1' }],
    ['DEFAULT update that changed the key: the old key', PK, 'u', { ...filled, id: 2 }, { id: 1, email: 'b@x.io' }, { id: '2' }],
    ['USING INDEX delete: the index columns', { kind: 'columns', columns: ['email'] }, 'd', { id: 1, email: 'a@x.io', active: false }, null, { email: 'a@x.io' }],
    ['NOTHING delete: nothing', { kind: 'columns', columns: [] }, 'd', filled, null, {}],
    ['unknown identity: the message key only', { kind: 'message-key' }, 'd', filled, null, { id: '1' }],
    ['FULL delete: everything, real NULLs kept', { kind: 'full' }, 'd', { id: 1, email: 'a@x.io', bio: null }, null, { id: '1', email: 'a@x.io', bio: null }],
    ['FULL, but an update without "before" (not FULL when it ran): the key', { kind: 'full' }, 'u', null, { id: 1, email: 'b@x.io' }, { id: '1' }],
  ];
  it.each(CASES)('%s', (_what, identity, op, before, after, expected) => {
    const parsed = parseDebeziumRecord(record({ before, after, source, op }), withIdentity(identity));
    expect(parsed.kind === 'change' && { ...parsed.change.before }).toEqual(expected);
  });

  it('dead letters name the identity columns', () => {
    const parsed = parseDebeziumRecord(record({ before: filled, after: null, source, op: 'd' }, { id: 1 }), withIdentity({ kind: 'columns', columns: ['email'] }));
    expect(parsed.kind === 'change' && parsed.change.keyColumns).toEqual(['email']);
  });

  it('declared identities: by table, "users" meaning public.users, "*" for the rest, and none', () => {
    const at = (schema: string, table: string) => ({ schema, table, lsn: null });
    const declared = new DeclaredIdentities({ users: 'full', 'app.items': { index: ['sku'] }, 'app.tags': 'nothing', 'app.kv': 'default' }, [], silentLogger());
    expect(declared.info(at('public', 'users')).identity).toEqual({ kind: 'full' });
    expect(declared.info(at('app', 'items')).identity).toEqual({ kind: 'columns', columns: ['sku'] });
    expect(declared.info(at('app', 'tags')).identity).toEqual({ kind: 'columns', columns: [] });
    expect(declared.info(at('app', 'kv')).identity).toEqual({ kind: 'message-key' });
    expect(declared.info(at('public', 'other')).identity).toEqual({ kind: 'message-key' });
    const everything = new DeclaredIdentities({ '*': 'full', 'public.logs': 'default' }, [], silentLogger());
    expect(everything.info(at('public', 'other')).identity).toEqual({ kind: 'full' });
    expect(everything.info(at('public', 'logs')).identity).toEqual({ kind: 'message-key' });
  });

  it('warns once about each mapped table whose identity nobody declared, with its first event', async () => {
    const lines: string[] = [];
    const log = { ...silentLogger(), warn: (fields: { table: string }, message: string) => lines.push(`${fields.table}: ${message}`) };
    const declared = new DeclaredIdentities({ users: 'full' }, [['public', 'users'], ['public', 'orders']], log as never);
    await declared.start();
    expect(lines).toEqual([]);
    for (const table of ['users', 'orders', 'orders', 'unmapped']) declared.info({ schema: 'public', table, lsn: null });
    expect(lines).toEqual(['public.orders: replica identity unknown: old rows of updates and deletes are read as their message key only']);
  });

  it.each([
    [{ kind: 'full' }, { kind: 'columns', columns: ['id'] }, { kind: 'columns', columns: ['id'] }],
    [{ kind: 'columns', columns: ['id', 'region'] }, { kind: 'columns', columns: ['region'] }, { kind: 'columns', columns: ['region'] }],
    [{ kind: 'full' }, { kind: 'full' }, { kind: 'full' }],
    [{ kind: 'message-key' }, { kind: 'full' }, { kind: 'message-key' }],
  ] as Array<[ReplicaIdentity, ReplicaIdentity, ReplicaIdentity]>)('weaker(%j, %j) = %j', (a, b, expected) => {
    expect(weaker(a, b)).toEqual(expected);
    expect(weaker(b, a)).toEqual(expected);
  });
});

describe('messages that are not change events', () => {
  const heartbeatTopic = '__debezium-heartbeat.app';
  it.each([
    ['a heartbeat', heartbeatTopic, { ts_ms: 5 }, { kind: 'skip', why: 'heartbeat' }],
    ['a heartbeat with the schema envelope', 'hb', { schema: { type: 'struct', name: 'io.debezium.connector.common.Heartbeat' }, payload: { ts_ms: 5 } }, { kind: 'skip', why: 'heartbeat' }],
    ['transaction metadata', 'app.transaction', { status: 'BEGIN', id: '571:53195829', ts_ms: 1, event_count: null, data_collections: null }, { kind: 'skip', why: 'transaction' }],
    ['a schema change', 'app', { source, ts_ms: 1, databaseName: 'app', schemaName: 'public', ddl: 'CREATE TABLE t (id int)', tableChanges: [] }, { kind: 'skip', why: 'schema_change' }],
  ])('%s is skipped', (_what, topic, value, expected) => {
    expect(parseDebeziumRecord(record(value, null, '1', topic), opts)).toEqual(expected);
  });

  it.each([
    ['{} on a table topic', 'app.public.users', {}],
    ['{} on the heartbeat topic', heartbeatTopic, {}],
    ['a heartbeat topic message of another shape', heartbeatTopic, { ts_ms: 5, extra: 1 }],
    ['a heartbeat whose ts_ms is not a number', heartbeatTopic, { ts_ms: '5' }],
    ['a transaction marker without an id', 'app.transaction', { status: 'BEGIN' }],
    ['an envelope around nothing', 'app.public.users', { schema: { type: 'struct' }, payload: {} }],
  ])('%s is malformed', (_what, topic, value) => {
    expect(parseDebeziumRecord(record(value, null, '1', topic), opts)).toMatchObject({ kind: 'malformed', reason: expect.stringMatching(/not a Debezium event/) });
  });
});
