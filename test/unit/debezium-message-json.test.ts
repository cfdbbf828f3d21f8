import { describe, expect, it } from 'vitest';
import { parseDebeziumRecord } from '../../src/sources/debezium/event-parser.js';
import { exactPayload, inexactNumbers, keyFields, readMessage, unwrap, type MessageJson } from '../../src/sources/debezium/message-json.js';
import { JsonNumber, parseJsonExact } from '../../src/sources/debezium/values.js';
import { ORDERS_DELETE, ORDERS_INSERT, ORDERS_KEY } from './debezium-fixtures.js';

const SCHEMA = '{"type":"struct","fields":[{"type":"struct","fields":[{"type":"int64","optional":false,"field":"id"}],"optional":true,"field":"after"}],"optional":false,"name":"app.public.t.Envelope"}';
const envelope = (payload: string, schema = SCHEMA) => `{"schema":${schema},"payload":${payload}}`;
const change = (after: string) => `{"before":null,"after":${after},"source":{"schema":"public","table":"t","ts_ms":1700000000123,"lsn":24023128,"ts_ns":1700000000123456789},"op":"c","ts_ms":1700000000200}`;

/** What the event decoder reads of a message: the same whichever way it was parsed. */
function readPart(message: MessageJson) {
  const payload = message.payload as Record<string, unknown>;
  const source = payload['source'] as Record<string, unknown> | undefined;
  return {
    before: payload['before'],
    after: payload['after'],
    ts_ms: payload['ts_ms'],
    lsn: source?.['lsn'],
    source_ts_ms: source?.['ts_ms'],
    fields: [...message.schema.fields],
    name: message.schema.name,
  };
}

/** The reference: the whole message through the exact (reviver) parser. */
const exactly = (text: string) => readPart(unwrap(parseJsonExact(text)));
const fast = (text: string) => readPart(readMessage(Buffer.from(text)));
const n = (text: string) => new JsonNumber(text);
const afterOf = (text: string) => (readMessage(Buffer.from(text)).payload as { after: Record<string, unknown> }).after;

describe('reading a message with exact numbers where the decoder reads', () => {
  // [what, after's JSON, the text each number under after must keep]
  const NUMBERS: Array<[string, string, Record<string, unknown>]> = [
    ['2^53 - 1', '{"id":9007199254740991}', { id: n('9007199254740991') }],
    ['2^53', '{"id":9007199254740992}', { id: n('9007199254740992') }],
    ['2^53 + 1 (JSON.parse rounds it to 2^53)', '{"id":9007199254740993}', { id: n('9007199254740993') }],
    ['-2^53 - 1', '{"id":-9007199254740993}', { id: n('-9007199254740993') }],
    ['-2^53 + 1', '{"id":-9007199254740991}', { id: n('-9007199254740991') }],
    ['15 digits', '{"id":999999999999999}', { id: n('999999999999999') }],
    ['16 digits that are exact', '{"id":1000000000000000}', { id: n('1000000000000000') }],
    ['16 digits past 2^53', '{"id":9999999999999999}', { id: n('9999999999999999') }],
    ['17 digits', '{"id":12345678901234567}', { id: n('12345678901234567') }],
    ['19 digits (int8 max)', '{"id":9223372036854775807}', { id: n('9223372036854775807') }],
    ['19 digits (int8 min)', '{"id":-9223372036854775808}', { id: n('-9223372036854775808') }],
    ['20 digits', '{"id":18446744073709551615}', { id: n('18446744073709551615') }],
    ['20 digits, a power of ten', '{"id":10000000000000000000}', { id: n('10000000000000000000') }],
    ['0.1', '{"x":0.1}', { x: n('0.1') }],
    ['1.5', '{"x":1.5}', { x: n('1.5') }],
    ['1.50 (String gives 1.5)', '{"x":1.50}', { x: n('1.50') }],
    ['1.0 (as Java writes a double)', '{"x":1.0}', { x: n('1.0') }],
    ['1e21', '{"x":1e21}', { x: n('1e21') }],
    ['1E5', '{"x":1E5}', { x: n('1E5') }],
    ['1.2345678901234568E16', '{"x":1.2345678901234568E16}', { x: n('1.2345678901234568E16') }],
    ['-2.5e-7', '{"x":-2.5e-7}', { x: n('-2.5e-7') }],
    ['1e400 (Infinity for JSON.parse)', '{"x":1e400}', { x: n('1e400') }],
    ['-0', '{"x":-0}', { x: n('-0') }],
    ['-0.0', '{"x":-0.0}', { x: n('-0.0') }],
    ['0 beside a -0', '{"x":0,"y":-0}', { x: n('0'), y: n('-0') }],
    ['2^53 beside 2^53 + 1', '{"a":9007199254740992,"b":9007199254740993}', { a: n('9007199254740992'), b: n('9007199254740993') }],
    ['a safe integer beside the same value with a fraction', '{"a":5,"b":5.0}', { a: n('5'), b: n('5.0') }],
    ['a safe integer beside the same value with an exponent', '{"a":500,"b":5e2,"c":5E+2}', { a: n('500'), b: n('5e2'), c: n('5E+2') }],
    ['safe integers beside an unrelated float', '{"a":7,"b":0.25,"c":9007199254740991}', { a: n('7'), b: n('0.25'), c: n('9007199254740991') }],
    ['0 beside 0.0', '{"a":0,"b":0.0,"c":0e1}', { a: n('0'), b: n('0.0'), c: n('0e1') }],
    ['whitespace before numbers', '{ "a" : 9007199254740993 , "b" :\n\t1.50, "c": [ 1.0 ] }', { a: n('9007199254740993'), b: n('1.50'), c: [n('1.0')] }],
    ['a big integer inside a string stays a string', '{"s":"12345678901234567890","t":":9007199254740993","id":7}', { s: '12345678901234567890', t: ':9007199254740993', id: n('7') }],
    [
      'a string that looks like the rounded number: the exact parse decides',
      '{"s":"x,9007199254740993","id":9007199254740992}',
      { s: 'x,9007199254740993', id: n('9007199254740992') },
    ],
    ['escapes in strings', '{"s":"caf\\u00e9 \\ud83d\\ude00 \\"q\\" \\\\ :1.50","id":1}', { s: 'café 😀 "q" \\ :1.50', id: n('1') }],
    ['an escaped key', '{"n\\u00e4me":1.50}', { 'näme': n('1.50') }],
    ['deep nesting', '{"s":{"a":[1,{"b":12345678901234567890,"c":[[-0.0]]}],"d":{"e":{"f":0.1}}}}', { s: { a: [n('1'), { b: n('12345678901234567890'), c: [[n('-0.0')]] }], d: { e: { f: n('0.1') } } } }],
    ['booleans and nulls untouched', '{"a":true,"b":null,"c":false}', { a: true, b: null, c: false }],
  ];

  for (const [what, after, expected] of NUMBERS) {
    it(`${what}, with the envelope`, () => {
      const text = envelope(change(after));
      expect(afterOf(text)).toEqual(expected);
      expect(fast(text)).toEqual(exactly(text));
    });
    it(`${what}, without it`, () => {
      const text = change(after);
      expect(afterOf(text)).toEqual(expected);
      expect(fast(text)).toEqual(exactly(text));
    });
  }

  it('source.lsn, source.ts_ms and ts_ms keep their text; numbers never read may be rounded', () => {
    const payload = readMessage(Buffer.from(envelope(change('{"id":1}')))).payload as Record<string, Record<string, unknown>>;
    expect(payload['source']!['lsn']).toEqual(n('24023128'));
    expect(payload['source']!['ts_ms']).toEqual(n('1700000000123'));
    expect(payload['ts_ms']).toEqual(n('1700000000200'));
    expect(typeof payload['source']!['ts_ns']).toBe('number');
  });

  it('an lsn past 2^53 takes the exact parse', () => {
    const text = '{"before":null,"after":{"id":1},"source":{"schema":"public","table":"t","lsn":18446744073709551615},"op":"c"}';
    expect(fast(text)).toEqual(exactly(text));
    expect(fast(text).lsn).toEqual(n('18446744073709551615'));
  });

  it('a real Debezium 3.0 event: int8 past 2^53 under after, 19-digit ts_ns', () => {
    for (const text of [ORDERS_INSERT, ORDERS_DELETE]) expect(fast(text)).toEqual(exactly(text));
    expect(afterOf(ORDERS_INSERT)).toMatchObject({ id: n('1'), account_id: n('9007199254740993'), weight: n('1.5'), created_at: n('1709210096789012') });
    const parsed = parseDebeziumRecord({ topic: 't', partition: 0, offset: '0', key: Buffer.from(ORDERS_KEY), value: Buffer.from(ORDERS_INSERT) }, { snapshotInvalidates: false });
    expect(parsed).toMatchObject({
      kind: 'change',
      commitTimeMs: 1796418114013,
      change: {
        op: 'insert',
        keyColumns: ['id'],
        after: { id: '1', account_id: '9007199254740993', price: '1234.50', created_at: '2024-02-29 12:34:56.789012', updated_at: '2024-02-29 12:34:56.789012+00' },
      },
    });
    // The converter's envelope calls a float8 "double".
    expect(parsed.kind === 'change' && parsed.change.after!['weight']).toBe('1.5');
  });

  it('the exact parse is taken only when a number read needs it', () => {
    const payloadOf = (text: string) => text.slice(text.indexOf(',"payload":') + 11, -1);
    // ts_us and ts_ns are past 15 digits, but nothing reads them.
    const plain = payloadOf(ORDERS_DELETE);
    expect(exactPayload(JSON.parse(plain), plain)).toBeDefined();
    // after.account_id is 2^53 + 1.
    const big = payloadOf(ORDERS_INSERT);
    expect(exactPayload(JSON.parse(big), big)).toBeUndefined();
  });

  it('schemas of the same length are told apart, and each is read once per distinct text', () => {
    const a = SCHEMA.replace('"int64"', '"int32"');
    const b = SCHEMA.replace('"int64"', '"float"');
    expect(a.length).toBe(b.length);
    for (let i = 0; i < 3; i++) {
      expect(readMessage(Buffer.from(envelope(change('{"id":1}'), a))).schema.fields.get('id')).toEqual({ type: 'int32' });
      expect(readMessage(Buffer.from(envelope(change('{"id":1}'), b))).schema.fields.get('id')).toEqual({ type: 'float' });
    }
  });

  it.each([
    ['a key named payload inside the schema', `{"schema":{"type":"struct","parameters":{"a":"1","payload":"x"},"fields":[{"type":"struct","fields":[{"type":"int64","field":"id"}],"field":"after"}],"name":"s"},"payload":${change('{"id":9007199254740993}')}}`],
    ['a trailing newline', `${envelope(change('{"id":9007199254740993}'))}\n`],
    ['spaces in the envelope', `{ "schema" : ${SCHEMA} , "payload" : ${change('{"id":9007199254740993}')} }`],
    ['payload before schema', `{"payload":${change('{"id":9007199254740993}')},"schema":${SCHEMA}}`],
    ['a schema that is not an object', `{"schema":null,"payload":${change('{"id":1}')}}`],
    ['a third member', `{"schema":${SCHEMA},"payload":${change('{"id":1}')},"extra":1}`],
    ['a repeated payload', `{"schema":${SCHEMA},"payload":${change('{"id":1}')},"payload":${change('{"id":2}')}}`],
    ['a payload that is not an object', envelope('[1.50,2]')],
  ])('an envelope the split cannot take is read whole: %s', (_what, text) => {
    expect(fast(text)).toEqual(exactly(text));
  });

  it('a value that is not JSON throws what JSON.parse throws', () => {
    for (const text of ['{"schema":{},"payload":{"a":}}', envelope('{"a":1'), 'nope', '{"schema":{"type":"struct"},"payload":']) {
      let expected: unknown;
      try {
        JSON.parse(text);
      } catch (err) {
        expected = err;
      }
      expect(() => readMessage(Buffer.from(text))).toThrow((expected as Error).message);
    }
  });

  it('a "__proto__" column keeps its value and leaves the prototype alone', () => {
    const after = afterOf(change('{"__proto__":1.50,"id":2}'));
    expect(Object.getOwnPropertyDescriptor(after, '__proto__')?.value).toEqual(n('1.50'));
    expect(Object.getPrototypeOf(after)).toBe(Object.prototype);
    expect(after['id']).toEqual(n('2'));
  });
});

describe('inexactNumbers', () => {
  it.each([
    ['{"a":1,"b":-2,"c":123456789012345,"d":0}', null],
    ['{"a":9007199254740991,"b":0.1,"c":1.5,"d":1e+21}', null],
    ['{"a":1.50}', [1.5]],
    ['{"a":[1.0,2]}', [1]],
    // A Set holds -0 as 0: a 0 elsewhere then takes the exact parse too.
    ['{"a": -0}', [0]],
    ['{"a":9007199254740993}', [9007199254740992]],
    ['{"a":"x:1.50"}', [1.5]],
    ['{"a":"1.50"}', null],
  ])('%s', (text, expected) => {
    const found = inexactNumbers(text);
    expect(found === null ? null : [...found]).toEqual(expected);
  });

  it('exactPayload leaves what is not an object as it is', () => {
    expect(exactPayload([1.5], '[1.50]')).toEqual([1.5]);
    expect(exactPayload(null, 'null')).toBeNull();
  });
});

describe('keyFields', () => {
  it.each([
    ['an envelope', ORDERS_KEY, ['id']],
    ['a bare key', '{"id":1,"tenant":"a"}', ['id', 'tenant']],
    ['not JSON', '{"id":', []],
    ['not an object', '[1]', []],
    ['an envelope whose payload is not an object', '{"schema":{"type":"int32"},"payload":5}', []],
  ])('%s', (_what, key, expected) => {
    expect(keyFields(Buffer.from(key))).toEqual(expected);
  });
});
