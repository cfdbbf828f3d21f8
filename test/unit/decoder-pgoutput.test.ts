import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Change } from '../../src/core/change.js';
import { evaluate } from '../../src/core/evaluate.js';
import type { Lsn } from '../../src/core/lsn.js';
import { compileRules } from '../../src/core/rules.js';
import { DecodeError } from '../../src/errors.js';
import { PgoutputDecoder, type DecodedSink } from '../../src/sources/postgres/decoder.js';

// pgoutput protocol version 1 messages, built byte by byte as the PostgreSQL docs
// ("Logical Replication Message Formats") describe them.

const PG_EPOCH_MS = Date.UTC(2000, 0, 1);

class Writer {
  private readonly bytes: Buffer[] = [];
  byte(v: number | string): this {
    this.bytes.push(Buffer.from([typeof v === 'string' ? v.charCodeAt(0) : v]));
    return this;
  }
  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.bytes.push(b);
    return this;
  }
  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.bytes.push(b);
    return this;
  }
  int64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.bytes.push(b);
    return this;
  }
  cstring(s: string): this {
    this.bytes.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  raw(b: Buffer): this {
    this.bytes.push(b);
    return this;
  }
  done(): Buffer {
    return Buffer.concat(this.bytes);
  }
}

/** Microseconds since 2000-01-01, as Postgres sends timestamps. */
const pgMicros = (unixMs: number, extraUs = 0n): bigint => BigInt(unixMs - PG_EPOCH_MS) * 1000n + extraUs;

const begin = (finalLsn: bigint, commitTimeUs: bigint, xid = 700): Buffer =>
  new Writer().byte('B').int64(finalLsn).int64(commitTimeUs).int32(xid).done();

const commit = (commitLsn: bigint, endLsn: bigint, commitTimeUs: bigint): Buffer =>
  new Writer().byte('C').byte(0).int64(commitLsn).int64(endLsn).int64(commitTimeUs).done();

interface Column {
  name: string;
  typeOid: number;
  key?: boolean;
}

const relation = (oid: number, schema: string, name: string, columns: Column[], identity = 'd'): Buffer => {
  const w = new Writer().byte('R').int32(oid).cstring(schema).cstring(name).byte(identity).int16(columns.length);
  for (const c of columns) w.byte(c.key ? 1 : 0).cstring(c.name).int32(c.typeOid).int32(-1);
  return w.done();
};

/** A tuple value: text, SQL NULL, or unchanged TOAST. */
type TupleValue = string | null | 'u!';
const UNCHANGED = 'u!' as const;

const tuple = (w: Writer, values: TupleValue[]): Writer => {
  w.int16(values.length);
  for (const v of values) {
    if (v === null) w.byte('n');
    else if (v === UNCHANGED) w.byte('u');
    else {
      const bytes = Buffer.from(v, 'utf8');
      w.byte('t').int32(bytes.length).raw(bytes);
    }
  }
  return w;
};

const insert = (oid: number, values: TupleValue[]): Buffer => tuple(new Writer().byte('I').int32(oid).byte('N'), values).done();

const update = (oid: number, values: TupleValue[], old?: { kind: 'K' | 'O'; values: TupleValue[] }): Buffer => {
  const w = new Writer().byte('U').int32(oid);
  if (old !== undefined) tuple(w.byte(old.kind), old.values);
  return tuple(w.byte('N'), values).done();
};

const del = (oid: number, kind: 'K' | 'O', values: TupleValue[]): Buffer => tuple(new Writer().byte('D').int32(oid).byte(kind), values).done();

const truncate = (oids: number[], flags = 0): Buffer => {
  const w = new Writer().byte('T').int32(oids.length).byte(flags);
  for (const oid of oids) w.int32(oid);
  return w.done();
};

const message = (transactional: boolean, lsn: bigint, prefix: string, content: string): Buffer =>
  new Writer().byte('M').byte(transactional ? 1 : 0).int64(lsn).cstring(prefix).int32(Buffer.byteLength(content)).raw(Buffer.from(content)).done();

class Recorder implements DecodedSink {
  readonly changes: Array<{ change: Change; commitTimeMs: number }> = [];
  readonly commits: Array<{ endLsn: Lsn; commitTimeMs: number }> = [];
  change(change: Change, commitTimeMs: number): void {
    this.changes.push({ change, commitTimeMs });
  }
  commit(endLsn: Lsn, commitTimeMs: number): void {
    this.commits.push({ endLsn, commitTimeMs });
  }
}

const USERS_OID = 16385;
const USERS: Column[] = [
  { name: 'id', typeOid: 20, key: true }, // int8
  { name: 'email', typeOid: 25 }, // text
  { name: 'created_at', typeOid: 1114 }, // timestamp
  { name: 'active', typeOid: 16 }, // bool
  { name: 'bio', typeOid: 25 }, // text, possibly TOASTed
];

const FINAL_LSN = 0x16b374d848n;
const END_LSN = 0x16b374d900n;
const COMMIT_MS = Date.UTC(2024, 4, 17, 12, 30, 45, 678);
const COMMIT_US = pgMicros(COMMIT_MS, 123n);

function decodeAll(messages: Buffer[], decoder = new PgoutputDecoder()): Recorder {
  const sink = new Recorder();
  for (const m of messages) decoder.decode(m, sink);
  return sink;
}

/** One transaction on the users table, holding the given change messages. */
function txn(...changes: Buffer[]): Buffer[] {
  return [begin(FINAL_LSN, COMMIT_US), relation(USERS_OID, 'public', 'users', USERS), ...changes, commit(FINAL_LSN, END_LSN, COMMIT_US)];
}

describe('PgoutputDecoder', () => {
  let savedTz: string | undefined;
  beforeEach(() => {
    savedTz = process.env['TZ'];
    // A zone with a 12:45 offset and DST: any conversion to a Date and back would show.
    process.env['TZ'] = 'Pacific/Chatham';
  });
  afterEach(() => {
    if (savedTz === undefined) delete process.env['TZ'];
    else process.env['TZ'] = savedTz;
  });

  it('decodes an insert, keeping every value as the text Postgres sent', () => {
    // The zone really is in effect: a Date-based parser would shift the timestamp.
    expect(new Date(Date.UTC(2024, 2, 31, 2, 30)).getTimezoneOffset()).not.toBe(0);
    const sink = decodeAll(txn(insert(USERS_OID, ['9007199254740993', 'A@Example.com', '2024-03-31 02:30:00.123456', 't', 'hello'])));
    expect(sink.changes).toHaveLength(1);
    const { change, commitTimeMs } = sink.changes[0]!;
    expect(change.schema).toBe('public');
    expect(change.table).toBe('users');
    expect(change.op).toBe('insert');
    expect(change.before).toBeNull();
    expect(change.after!['id']).toBe('9007199254740993');
    expect(change.after!['email']).toBe('A@Example.com');
    // Not a Date, not shifted to the process's zone: the exact text.
    expect(change.after!['created_at']).toBe('2024-03-31 02:30:00.123456');
    expect(change.after!['bio']).toBe('hello');
    expect(change.keyColumns).toEqual(['id']);
    expect(change.version).toBe(FINAL_LSN);
    expect(typeof change.version).toBe('bigint');
    expect(change.position).toBe('16/B374D848');
    expect(commitTimeMs).toBe(COMMIT_MS);
    expect(sink.commits).toEqual([{ endLsn: END_LSN, commitTimeMs: COMMIT_MS }]);
  });

  it('keeps timestamptz, numeric, json and uuid text as sent', () => {
    const oid = 16400;
    const cols: Column[] = [
      { name: 'id', typeOid: 2950, key: true }, // uuid
      { name: 'at', typeOid: 1184 }, // timestamptz
      { name: 'price', typeOid: 1700 }, // numeric
      { name: 'doc', typeOid: 3802 }, // jsonb
      { name: 'd', typeOid: 1082 }, // date
      { name: 'f', typeOid: 701 }, // float8
    ];
    const values = ['a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2024-05-17 12:30:45.678123+00', '10.50', '{"a": 1}', '2024-02-29', '0.1'];
    const sink = decodeAll([begin(FINAL_LSN, COMMIT_US), relation(oid, 'app', 'things', cols), insert(oid, values), commit(FINAL_LSN, END_LSN, COMMIT_US)]);
    const after = sink.changes[0]!.change.after!;
    expect(cols.map((c) => after[c.name])).toEqual(values);
    expect(sink.changes[0]!.change.schema).toBe('app');
  });

  it('renders booleans as true/false (SPEC §4), not as the wire form t/f', () => {
    // SPEC §4: values render as their PostgreSQL text form, "booleans `true`/`false`"; explain renders
    // a JSON true as "true". pgoutput sends boolout's "t"/"f".
    const sink = decodeAll(txn(insert(USERS_OID, ['1', 'a@x', null, 't', null]), insert(USERS_OID, ['2', 'b@x', null, 'f', null])));
    const { rules } = compileRules([{ file: 'm.yaml', rules: [{ table: 'users', invalidate: ['active:{active}'] }] }]);
    const keys = sink.changes.flatMap(({ change }) => evaluate(change, rules).operations.map((o) => ('key' in o ? o.key : '')));
    expect(keys).toEqual(['active:true', 'active:false']);
  });

  it('decodes NULL as null', () => {
    const sink = decodeAll(txn(insert(USERS_OID, ['1', null, null, null, null])));
    const after = sink.changes[0]!.change.after!;
    expect(after['email']).toBeNull();
    expect(Object.hasOwn(after, 'email')).toBe(true);
  });

  it('update without an old tuple: the old row holds only the key, copied from the new row', () => {
    const sink = decodeAll(txn(update(USERS_OID, ['42', 'new@x', null, 'f', 'text'])));
    const { change } = sink.changes[0]!;
    expect(change.op).toBe('update');
    expect({ ...change.before }).toEqual({ id: '42' });
    expect(Object.keys(change.before!)).toEqual(['id']);
    expect(change.after!['email']).toBe('new@x');
  });

  it("update with a 'K' old key: the old row is the old key", () => {
    const sink = decodeAll(
      txn(update(USERS_OID, ['43', 'a@x', null, 't', 'x'], { kind: 'K', values: ['42', null, null, null, null] })),
    );
    const { change } = sink.changes[0]!;
    expect(change.before!['id']).toBe('42');
    // Non-key columns of a key tuple are placeholders, not SQL NULLs: unknown.
    expect(change.before!['email']).toBeUndefined();
    expect(change.after!['id']).toBe('43');
  });

  it("update with an 'O' old row (REPLICA IDENTITY FULL): the whole old row", () => {
    const sink = decodeAll(
      txn(update(USERS_OID, ['42', 'new@x', null, 't', 'b'], { kind: 'O', values: ['42', 'old@x', null, 'f', 'a'] })),
    );
    const { change } = sink.changes[0]!;
    expect({ ...change.before }).toEqual({ id: '42', email: 'old@x', created_at: null, active: 'false', bio: 'a' });
    expect(change.after!['email']).toBe('new@x');
  });

  it("unchanged TOAST in the new row without an old row is unknown", () => {
    const sink = decodeAll(txn(update(USERS_OID, ['42', 'new@x', null, 't', UNCHANGED])));
    const { change } = sink.changes[0]!;
    expect(change.after!['bio']).toBeUndefined();
    const { rules } = compileRules([{ file: 'm.yaml', rules: [{ table: 'users', invalidate: ['bio:{bio}'] }] }]);
    const result = evaluate(change, rules);
    expect(result.operations).toEqual([]);
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.key).toEqual({ id: '42' });
  });

  it("unchanged TOAST in the new row with a 'K' old key is still unknown", () => {
    const sink = decodeAll(txn(update(USERS_OID, ['43', 'a@x', null, 't', UNCHANGED], { kind: 'K', values: ['42', null, null, null, null] })));
    expect(sink.changes[0]!.change.after!['bio']).toBeUndefined();
  });

  it("unchanged TOAST in the new row with an 'O' old row is taken from the old row", () => {
    const sink = decodeAll(
      txn(update(USERS_OID, ['42', 'new@x', null, 't', UNCHANGED], { kind: 'O', values: ['42', 'old@x', null, 't', 'long text'] })),
    );
    expect(sink.changes[0]!.change.after!['bio']).toBe('long text');
  });

  it("delete with a 'K' old key", () => {
    const sink = decodeAll(txn(del(USERS_OID, 'K', ['42', null, null, null, null])));
    const { change } = sink.changes[0]!;
    expect(change.op).toBe('delete');
    expect(change.after).toBeNull();
    expect(change.before!['id']).toBe('42');
    expect(change.before!['email']).toBeUndefined();
  });

  it("delete with an 'O' old row", () => {
    const sink = decodeAll(txn(del(USERS_OID, 'O', ['42', 'x@y', null, 'f', 'b'])));
    expect({ ...sink.changes[0]!.change.before }).toEqual({ id: '42', email: 'x@y', created_at: null, active: 'false', bio: 'b' });
  });

  it('truncate of two relations gives two changes', () => {
    const other = 16390;
    const sink = decodeAll([
      begin(FINAL_LSN, COMMIT_US),
      relation(USERS_OID, 'public', 'users', USERS),
      relation(other, 'app', 'orders', [{ name: 'order_id', typeOid: 23, key: true }]),
      truncate([USERS_OID, other], 1),
      commit(FINAL_LSN, END_LSN, COMMIT_US),
    ]);
    expect(sink.changes.map(({ change }) => [change.schema, change.table, change.op, change.before, change.after])).toEqual([
      ['public', 'users', 'truncate', null, null],
      ['app', 'orders', 'truncate', null, null],
    ]);
    expect(sink.changes.map(({ change }) => change.keyColumns)).toEqual([['id'], ['order_id']]);
    expect(sink.changes.every(({ change }) => change.version === FINAL_LSN)).toBe(true);
  });

  it('composite keys come from the relation flags', () => {
    const oid = 16500;
    const cols: Column[] = [
      { name: 'org_id', typeOid: 23, key: true },
      { name: 'role', typeOid: 25 },
      { name: 'user_id', typeOid: 23, key: true },
    ];
    const sink = decodeAll([begin(FINAL_LSN, COMMIT_US), relation(oid, 'public', 'members', cols), update(oid, ['1', 'admin', '2']), commit(FINAL_LSN, END_LSN, COMMIT_US)]);
    const { change } = sink.changes[0]!;
    expect(change.keyColumns).toEqual(['org_id', 'user_id']);
    expect({ ...change.before }).toEqual({ org_id: '1', user_id: '2' });
  });

  it('with REPLICA IDENTITY FULL, a dead letter still carries no row values beyond the key (SPEC §6.3)', () => {
    // For REPLICA IDENTITY FULL, pgoutput flags every column as part of the identity
    // (logicalrep_write_attrs), so relation.keyColumns is the whole row. A template naming a column
    // the table lacks (a typo that check warns about) then dead-letters every change together with
    // every value of the row: here the email.
    const oid = 16600;
    const cols: Column[] = [
      { name: 'id', typeOid: 20, key: true },
      { name: 'email', typeOid: 25, key: true },
    ];
    const sink = decodeAll([
      begin(FINAL_LSN, COMMIT_US),
      relation(oid, 'public', 'accounts', cols, 'f'),
      insert(oid, ['1', 'private@example.com']),
      commit(FINAL_LSN, END_LSN, COMMIT_US),
    ]);
    const { rules } = compileRules([{ file: 'm.yaml', rules: [{ table: 'accounts', invalidate: ['account:{emial}'] }] }]);
    const result = evaluate(sink.changes[0]!.change, rules);
    expect(result.deadLetters).toHaveLength(1);
    expect(JSON.stringify(result.deadLetters[0]!.key)).not.toContain('private@example.com');
  });

  it('each transaction carries its own version, position and commit time', () => {
    const decoder = new PgoutputDecoder();
    const t2Ms = COMMIT_MS + 5_000;
    const sink = decodeAll(
      [
        ...txn(insert(USERS_OID, ['1', 'a', null, null, null])),
        begin(0x1_0000_0000n, pgMicros(t2Ms)),
        insert(USERS_OID, ['2', 'b', null, null, null]),
        insert(USERS_OID, ['3', 'c', null, null, null]),
        commit(0x1_0000_0000n, 0x1_0000_0040n, pgMicros(t2Ms)),
      ],
      decoder,
    );
    expect(sink.changes.map(({ change, commitTimeMs }) => [change.after!['id'], change.version, change.position, commitTimeMs])).toEqual([
      ['1', FINAL_LSN, '16/B374D848', COMMIT_MS],
      ['2', 0x1_0000_0000n, '1/0', t2Ms],
      ['3', 0x1_0000_0000n, '1/0', t2Ms],
    ]);
    expect(sink.commits).toEqual([
      { endLsn: END_LSN, commitTimeMs: COMMIT_MS },
      { endLsn: 0x1_0000_0040n, commitTimeMs: t2Ms },
    ]);
    expect(decoder.inTransaction).toBe(false);
  });

  it('tracks whether it is inside a transaction', () => {
    const decoder = new PgoutputDecoder();
    const sink = new Recorder();
    expect(decoder.inTransaction).toBe(false);
    decoder.decode(begin(FINAL_LSN, COMMIT_US), sink);
    expect(decoder.inTransaction).toBe(true);
    decoder.decode(commit(FINAL_LSN, END_LSN, COMMIT_US), sink);
    expect(decoder.inTransaction).toBe(false);
  });

  it('ignores logical messages (the heartbeat), inside and outside a transaction', () => {
    const decoder = new PgoutputDecoder();
    const sink = decodeAll([message(false, 0x10n, 'cdc-invalidator', 'heartbeat'), ...txn(message(true, 0x20n, 'x', 'y'))], decoder);
    expect(sink.changes).toEqual([]);
    expect(sink.commits).toHaveLength(1);
  });

  it('applies a new Relation message (schema change) to later changes', () => {
    const decoder = new PgoutputDecoder();
    const sink = decodeAll(
      [
        ...txn(insert(USERS_OID, ['1', 'a', null, null, null])),
        begin(0x20_0000_0000n, COMMIT_US),
        relation(USERS_OID, 'public', 'users', [
          { name: 'id', typeOid: 20, key: true },
          { name: 'email_address', typeOid: 25 },
        ]),
        insert(USERS_OID, ['2', 'b@x']),
        commit(0x20_0000_0000n, 0x20_0000_0010n, COMMIT_US),
      ],
      decoder,
    );
    expect({ ...sink.changes[1]!.change.after }).toEqual({ id: '2', email_address: 'b@x' });
  });

  const errors: Array<{ name: string; messages: () => Buffer[]; error: RegExp }> = [
    {
      name: 'an insert outside BEGIN',
      messages: () => [relation(USERS_OID, 'public', 'users', USERS), insert(USERS_OID, ['1', 'a', null, null, null])],
      error: /INSERT outside a transaction/,
    },
    {
      name: 'a delete after COMMIT',
      messages: () => [...txn(), del(USERS_OID, 'K', ['1', null, null, null, null])],
      error: /DELETE outside a transaction/,
    },
    {
      name: 'a COMMIT without BEGIN',
      messages: () => [commit(FINAL_LSN, END_LSN, COMMIT_US)],
      error: /COMMIT outside a transaction/,
    },
    { name: 'an unknown message tag', messages: () => [Buffer.from('Zgarbage')], error: /cannot decode pgoutput message/ },
    { name: 'an empty message', messages: () => [Buffer.alloc(0)], error: /cannot decode/ },
    { name: 'a truncated BEGIN', messages: () => [begin(FINAL_LSN, COMMIT_US).subarray(0, 7)], error: /cannot decode/ },
    {
      name: 'a truncated tuple',
      messages: () => [begin(FINAL_LSN, COMMIT_US), relation(USERS_OID, 'public', 'users', USERS), insert(USERS_OID, ['1', 'abc', null, null, null]).subarray(0, 15)],
      error: /cannot decode/,
    },
    {
      name: 'an insert into a relation never described',
      messages: () => [begin(FINAL_LSN, COMMIT_US), insert(99999, ['1'])],
      error: /cannot decode/,
    },
    {
      name: 'a truncate of a relation never described',
      messages: () => [begin(FINAL_LSN, COMMIT_US), truncate([99999])],
      error: /TRUNCATE of a relation never described/,
    },
    {
      name: 'an unknown tuple value kind',
      messages: () => [
        begin(FINAL_LSN, COMMIT_US),
        relation(USERS_OID, 'public', 'users', [{ name: 'id', typeOid: 20, key: true }]),
        new Writer().byte('I').int32(USERS_OID).byte('N').int16(1).byte('x').done(),
      ],
      error: /cannot decode/,
    },
    { name: 'a BEGIN without a commit LSN', messages: () => [begin(0n, COMMIT_US)], error: /BEGIN without a commit LSN/ },
  ];

  it.each(errors)('throws DecodeError for $name', ({ messages, error }) => {
    let caught: unknown;
    try {
      decodeAll(messages());
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(DecodeError);
    expect((caught as DecodeError).message).toMatch(error);
    expect((caught as DecodeError).code).toBe('DECODE');
    expect((caught as DecodeError).retryable).toBe(false);
  });

  it('does not emit the change it rejects', () => {
    const sink = new Recorder();
    const decoder = new PgoutputDecoder();
    decoder.decode(relation(USERS_OID, 'public', 'users', USERS), sink);
    expect(() => decoder.decode(insert(USERS_OID, ['1', 'a', null, null, null]), sink)).toThrow(DecodeError);
    expect(sink.changes).toEqual([]);
  });
});
