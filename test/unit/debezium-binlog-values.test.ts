// MySQL and MariaDB values as Debezium's binlog connectors encode them (JSON converter, schema
// envelope), to the one text form keys are rendered in.
import { describe, expect, it } from 'vitest';
import { binlogTextValue, bitsText } from '../../src/sources/debezium/binlog-values.js';
import { JsonNumber, type FieldType } from '../../src/sources/debezium/values.js';

const n = (text: string) => new JsonNumber(text);
const decimal = (scale: number): FieldType => ({ type: 'bytes', name: 'org.apache.kafka.connect.data.Decimal', scale });
/** The unscaled value as big-endian two's complement bytes, base64: what `precise` sends. */
const unscaled = (v: bigint) => {
  // Java's BigInteger.toByteArray: the fewest bytes that hold v and its sign bit.
  let length = 1;
  while (v < -(1n << BigInt(8 * length - 1)) || v >= 1n << BigInt(8 * length - 1)) length++;
  const bits = v < 0n ? (1n << BigInt(8 * length)) + v : v;
  return Buffer.from(bits.toString(16).padStart(2 * length, '0'), 'hex').toString('base64');
};

describe('binlogTextValue', () => {
  it.each<[string, unknown, FieldType, string | null | undefined]>([
    ['INT', n('42'), { type: 'int32' }, '42'],
    ['TINYINT(1) / BOOLEAN, an integer to Debezium', n('1'), { type: 'int16' }, '1'],
    ['BIGINT past 2^53', n('9007199254740993'), { type: 'int64' }, '9007199254740993'],
    ['INT UNSIGNED', n('4294967295'), { type: 'int64' }, '4294967295'],
    // bigint.unsigned.handling.mode=long wraps 2^64-1 to -1: without the source type, unknown.
    ['a negative BIGINT, signedness unknown', n('-1'), { type: 'int64' }, undefined],
    ['a negative BIGINT, source type BIGINT', n('-9223372036854775808'), { type: 'int64', sourceType: 'BIGINT' }, '-9223372036854775808'],
    ['a wrapped BIGINT UNSIGNED, source type propagated', n('-1'), { type: 'int64', sourceType: 'BIGINT UNSIGNED' }, '18446744073709551615'],
    ['BIGINT UNSIGNED under precise', unscaled(18446744073709551615n), decimal(0), '18446744073709551615'],
    ['DECIMAL(10,2)', unscaled(120050n), decimal(2), '1200.50'],
    ['DECIMAL(10,2), negative', unscaled(-50n), decimal(2), '-0.50'],
    ['DECIMAL(20,2) past 2^53', unscaled(200000000000000002n), decimal(2), '2000000000000000.02'],
    ['DECIMAL under decimal.handling.mode=string', '1200.50', { type: 'string' }, '1200.50'],
    ['DECIMAL under double: the scale is lost', n('1200.5'), { type: 'double', sourceType: 'DECIMAL' }, undefined],
    ['DOUBLE', n('0.1'), { type: 'double' }, '0.1'],
    ['DOUBLE, in Connect\'s own name', n('1e300'), { type: 'float64' }, '1e+300'],
    ['FLOAT', n('1.5'), { type: 'float' }, '1.5'],
    ['DATE', n('19782'), { type: 'int32', name: 'io.debezium.time.Date' }, '2024-02-29'],
    ['DATETIME (ms)', n('1709251199000'), { type: 'int64', name: 'io.debezium.time.Timestamp' }, '2024-02-29 23:59:59'],
    ['DATETIME(6)', n('1709251199123456'), { type: 'int64', name: 'io.debezium.time.MicroTimestamp' }, '2024-02-29 23:59:59.123456'],
    ['TIMESTAMP(3), in UTC', '2024-02-29T23:59:59.500Z', { type: 'string', name: 'io.debezium.time.ZonedTimestamp' }, '2024-02-29 23:59:59.5+00'],
    ['TIME(6)', n('45296000001'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, '12:34:56.000001'],
    ['a negative TIME', n('-3723000000'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, undefined],
    ['a TIME past a day', n('90000000000'), { type: 'int64', name: 'io.debezium.time.MicroTime' }, undefined],
    ['YEAR', n('2024'), { type: 'int32', name: 'io.debezium.time.Year' }, '2024'],
    ['BIT(1)', true, { type: 'boolean' }, 'true'],
    ['BIT(10)', Buffer.from([0x01, 0x02]).toString('base64'), { type: 'bytes', name: 'io.debezium.data.Bits', length: 10 }, '1000000001'],
    ['ENUM', 'b', { type: 'string', name: 'io.debezium.data.Enum' }, 'b'],
    ['SET', 'x,z', { type: 'string', name: 'io.debezium.data.EnumSet' }, 'x,z'],
    ['JSON', '{"a":[1,2]}', { type: 'string', name: 'io.debezium.data.Json' }, '{"a":[1,2]}'],
    ['VARBINARY', Buffer.from([1, 2, 0xff]).toString('base64'), { type: 'bytes' }, '\\x0102ff'],
    ['an empty VARBINARY', '', { type: 'bytes' }, '\\x'],
    ['TEXT', 'hé', { type: 'string' }, 'hé'],
    ['NULL', null, { type: 'string' }, null],
    ['a geometry', { wkb: 'AQ==', srid: null }, { type: 'struct', name: 'io.debezium.data.geometry.Geometry' }, undefined],
    ['an unknown logical type', 'x', { type: 'string', name: 'io.debezium.data.Something' }, undefined],
  ])('%s', (_name, value, field, expected) => {
    expect(binlogTextValue(value, field)).toBe(expected);
  });

  it('is unknown without the schema envelope: nothing tells a DECIMAL from a VARCHAR, or a DATETIME from a BIGINT', () => {
    expect(binlogTextValue('AdQ=', undefined)).toBeUndefined();
    expect(binlogTextValue(n('1709251199000'), undefined)).toBeUndefined();
    expect(binlogTextValue(null, undefined)).toBeNull();
  });
});

describe('bitsText', () => {
  it('reads little-endian bytes as the column bits, the most significant first', () => {
    expect(bitsText(Buffer.from([0b0000_0101]).toString('base64'), 3)).toBe('101');
    expect(bitsText(Buffer.from([0xff, 0x01]).toString('base64'), 9)).toBe('111111111');
    expect(bitsText(Buffer.from([0, 0]).toString('base64'), 16)).toBe('0000000000000000');
  });

  it('is unknown when the bits do not fit the length, or the length is missing', () => {
    expect(bitsText(Buffer.from([0xff]).toString('base64'), 3)).toBeUndefined();
    expect(bitsText(Buffer.from([0x01]).toString('base64'), 9)).toBeUndefined();
    expect(bitsText(Buffer.from([0x01]).toString('base64'), undefined)).toBeUndefined();
  });
});
