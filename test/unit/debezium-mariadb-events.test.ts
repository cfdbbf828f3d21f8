// Real events of Debezium 3.0.1's MariaDB connector (test/fixtures/debezium-mariadb, recorded by
// test/harness/mariadb.test.ts with MARIADB_FIXTURES=1 against MariaDB 10.11), through the parser:
// the table is database.table, old rows are whole, values are in the documented text form. MySQL's
// connector writes the same shape, with source.connector "mysql".
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeMessage } from '../../src/commands/check/debezium-checks.js';
import { parseDebeziumRecord } from '../../src/sources/debezium/event-parser.js';

const fixture = (name: string) => readFileSync(new URL(`../fixtures/debezium-mariadb/${name}.json`, import.meta.url));
const record = (value: Buffer, key: object | null = { id: 1 }) => ({
  topic: 'mdb.shop.items',
  partition: 0,
  offset: '7',
  key: key === null ? null : Buffer.from(JSON.stringify(key)),
  value,
});
const parse = (name: string, key?: object | null) => parseDebeziumRecord(record(fixture(name), key), { snapshotInvalidates: false });

describe("Debezium's MariaDB connector events", () => {
  it('an insert: the table from source.db and source.table, the new row', () => {
    const parsed = parse('insert');
    expect(parsed.kind).toBe('change');
    if (parsed.kind !== 'change') return;
    expect(parsed.change).toMatchObject({ table: 'items', op: 'insert', before: null, after: { id: '1', name: 'pen' }, version: null, position: 'mdb.shop.items[0]@7' });
    expect(parsed.change.schema).toMatch(/^maria_/);
    expect(parsed.commitTimeMs).toBeGreaterThan(0);
  });

  it('an update and a delete carry the whole old row, used as sent', () => {
    const update = parse('update');
    expect(update.kind === 'change' && update.change).toMatchObject({ op: 'update', before: { id: '1', name: 'pen' }, after: { id: '1', name: 'red pen' }, keyColumns: ['id'] });
    const del = parse('delete');
    expect(del.kind === 'change' && del.change).toMatchObject({ op: 'delete', before: { id: '1', name: 'red pen' }, after: null });
  });

  it('a truncate: no rows, a null message key', () => {
    const parsed = parse('truncate', null);
    expect(parsed.kind === 'change' && parsed.change).toMatchObject({ op: 'truncate', before: null, after: null, keyColumns: [] });
  });

  it('every column type in its text form; a wrapped BIGINT UNSIGNED, a negative BIGINT and a negative TIME unknown', () => {
    const parsed = parse('types');
    expect(parsed.kind).toBe('change');
    if (parsed.kind !== 'change') return;
    expect({ ...parsed.change.after }).toEqual({
      // id is BIGINT UNSIGNED 18446744073709551615, sent as -1 (bigint.unsigned.handling.mode=long): absent, unknown.
      d: '1200.50',
      dneg: '-0.50',
      dt: '2024-02-29 23:59:59',
      dt6: '2024-02-29 23:59:59.123456',
      ts: '2024-02-29 23:59:59.5+00',
      dd: '2024-02-29',
      // tm is TIME '-01:02:03': unknown.
      tm6: '12:34:56.000001',
      yr: '2024',
      b1: 'true',
      b10: '1000000001',
      e: 'b',
      s: 'x,z',
      j: '{"a": [1, 2]}',
      bin: '\\x0102ff',
      f: '1.5',
      dbl: '0.1',
      tiny: '-5',
      bool: '1',
      u: '4294967295',
      // big is BIGINT -9223372036854775808: signed or a wrapped unsigned, the envelope does not say.
      txt: 'hé',
    });
  });

  it('check reads the connector, the database.table and the envelope', () => {
    expect(describeMessage(fixture('insert'))).toMatchObject({ kind: 'event', connector: 'mariadb', table: 'items', envelope: true, op: 'c' });
    expect(describeMessage(null)).toEqual({ kind: 'other' });
    const bare = Buffer.from(JSON.stringify((JSON.parse(fixture('insert').toString()) as { payload: unknown }).payload));
    expect(describeMessage(bare)).toMatchObject({ kind: 'event', connector: 'mariadb', envelope: false });
    expect(describeMessage(Buffer.from('{}'))).toMatchObject({ kind: 'malformed' });
  });

  it("MySQL's connector: the same shape, read the same way (source.connector mysql, a server-uuid GTID)", () => {
    const message = JSON.parse(fixture('update').toString()) as { payload: { source: Record<string, unknown> } };
    Object.assign(message.payload.source, { connector: 'mysql', db: 'shop', gtid: '3e11fa47-71ca-11e1-9e33-c80aa9429562:23' });
    const parsed = parseDebeziumRecord(record(Buffer.from(JSON.stringify(message))), { snapshotInvalidates: false });
    expect(parsed.kind === 'change' && parsed.change).toMatchObject({ schema: 'shop', table: 'items', op: 'update', before: { id: '1', name: 'pen' }, after: { id: '1', name: 'red pen' } });
  });
});
