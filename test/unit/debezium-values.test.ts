import { describe, expect, it } from 'vitest';
import { decimalFromBase64, formatDecimal, unscaledOf } from '../../src/sources/debezium/decimal.js';
import { formatDate, formatFloat, formatTime, formatTimestamp } from '../../src/sources/debezium/temporal.js';
import { columnType, parseJsonExact, textValue, type ColumnType, type FieldType } from '../../src/sources/debezium/values.js';

const DECIMAL = 'org.apache.kafka.connect.data.Decimal';
const decimal = (scale: number): FieldType => ({ type: 'bytes', name: DECIMAL, scale });
const logical = (name: string, type = 'int64'): FieldType => ({ type, name });
const col = (type: string, precision: number | null = null, scale: number | null = null): ColumnType => ({ type, precision, scale });

/** [what, the value as JSON text, the envelope's field, the catalog's column, PostgreSQL's text or undefined]. */
const CASES: Array<[string, string, FieldType | undefined, ColumnType | undefined, string | null | undefined]> = [
  // decimal.handling.mode=precise (the connector's default)
  ['Decimal 1200.00', '"AdTA"', decimal(2), undefined, '1200.00'],
  ['Decimal -1.50', '"/2o="', decimal(2), undefined, '-1.50'],
  ['Decimal zero keeps its scale', '"AA=="', decimal(2), undefined, '0.00'],
  ['Decimal -0.001', '"/w=="', decimal(3), undefined, '-0.001'],
  ['Decimal past 2^64', '"AQAAAAAAAAAB"', decimal(0), undefined, '18446744073709551617'],
  ['Decimal as digits (decimal.format=NUMERIC)', '1200', decimal(2), undefined, '1200.00'],
  ['Decimal without its scale', '"AdTA"', { type: 'bytes', name: DECIMAL }, undefined, undefined],
  ['Decimal that is not base64', '"12.5!"', decimal(2), undefined, undefined],
  // Debezium 3.0 sends an unconstrained NUMERIC's -905.0 as {scale: 0, value: -905}: the display scale is lost.
  ['VariableScaleDecimal (trailing zeros lost)', '{"scale":0,"value":"/Hc="}', logical('io.debezium.data.VariableScaleDecimal', 'struct'), undefined, undefined],
  ['money (a Decimal, but PostgreSQL writes $1,200.00)', '"AdTA"', decimal(2), col('money'), undefined],
  // decimal.handling.mode=string and double
  ['string mode', '"1200.00"', { type: 'string' }, col('numeric', 12, 2), '1200.00'],
  ['string mode, NaN', '"NaN"', { type: 'string' }, col('numeric', 10, 2), 'NaN'],
  // Measured on Debezium 3.0: string mode keeps an unconstrained NUMERIC's display scale ("-905.0").
  ['string mode, unconstrained numeric', '"-905.0"', { type: 'string' }, col('numeric'), '-905.0'],
  ['string mode, not a number', '"AdTA"', { type: 'string' }, col('numeric', 12, 2), undefined],
  ['double mode, numeric(12,2)', '1200.0', { type: 'float64' }, col('numeric', 12, 2), '1200.00'],
  ['double mode, too many digits for a double', '1.2345678901234568E16', { type: 'float64' }, col('numeric', 20, 2), undefined],
  ['double mode, unconstrained numeric', '0.1', { type: 'float64' }, col('numeric'), undefined],
  // no schema envelope: the catalog's column type decides
  ['base64 numeric(12,2) without envelope', '"AdTA"', undefined, col('numeric', 12, 2), '1200.00'],
  ['digits that are also base64, scale 2: base64', '"BNI="', undefined, col('numeric', 12, 2), '12.34'],
  ['string-mode numeric without envelope', '"1200.00"', undefined, col('numeric', 12, 2), '1200.00'],
  ['"1234" at scale 0: text or base64, unknown', '"1234"', undefined, col('numeric', 10, 0), undefined],
  ['"12" at scale 0: not base64, text', '"12"', undefined, col('numeric', 10, 0), '12'],
  ['unconstrained numeric struct without envelope', '{"scale":3,"value":"MDk="}', undefined, col('numeric'), undefined],
  ['unconstrained numeric text without envelope (string mode)', '"-905.0"', undefined, col('numeric'), '-905.0'],
  ['unconstrained numeric as a double without envelope', '-905.0', undefined, col('numeric'), undefined],
  ['base64 numeric with no scale declared', '"AdTA"', undefined, col('numeric'), undefined],
  ['double without envelope, numeric(12,2)', '1200.0', undefined, col('numeric', 12, 2), '1200.00'],
  ['date without envelope', '19782', undefined, col('date'), '2024-02-29'],
  ['timestamp(6) without envelope: µs', '1709251199500000', undefined, col('timestamp without time zone'), '2024-02-29 23:59:59.5'],
  ['timestamp(3) without envelope: ms', '1709251199500', undefined, col('timestamp without time zone', 3), '2024-02-29 23:59:59.5'],
  ['timestamptz without envelope', '"2024-02-29T23:59:59.5Z"', undefined, col('timestamp with time zone'), '2024-02-29 23:59:59.5+00'],
  ['time without envelope', '45296000001', undefined, col('time without time zone'), '12:34:56.000001'],
  ['time(3) without envelope: ms or µs, unknown', '45296000', undefined, col('time without time zone', 3), undefined],
  ['bytea without envelope', '"AQI="', undefined, col('bytea'), '\\x0102'],
  ['interval', '3600000000', undefined, col('interval'), undefined],
  ['an array', '[1,2]', undefined, col('integer[]'), undefined],
  ['text without envelope', '"AdTA"', undefined, col('text'), 'AdTA'],
  ['uuid without envelope', '"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"', undefined, col('uuid'), 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  // temporal logical types (time.precision.mode=adaptive_time_microseconds, and connect)
  ['Date', '19782', logical('io.debezium.time.Date', 'int32'), undefined, '2024-02-29'],
  ['Date before 0001-01-01', '-719163', logical('io.debezium.time.Date', 'int32'), undefined, undefined],
  ['Date after 9999-12-31', '2932897', logical('io.debezium.time.Date', 'int32'), undefined, undefined],
  ['connect Date', '0', logical('org.apache.kafka.connect.data.Date', 'int32'), undefined, '1970-01-01'],
  ['MicroTimestamp', '1709251199500000', logical('io.debezium.time.MicroTimestamp'), undefined, '2024-02-29 23:59:59.5'],
  ['Timestamp (ms)', '1709251199500', logical('io.debezium.time.Timestamp'), undefined, '2024-02-29 23:59:59.5'],
  ['NanoTimestamp', '1709251199500000123', logical('io.debezium.time.NanoTimestamp'), undefined, '2024-02-29 23:59:59.5'],
  ['infinity timestamp', '9223372036825200000', logical('io.debezium.time.MicroTimestamp'), undefined, undefined],
  ['ZonedTimestamp', '"2024-02-29T23:59:59.500Z"', logical('io.debezium.time.ZonedTimestamp', 'string'), undefined, '2024-02-29 23:59:59.5+00'],
  ['ZonedTimestamp whole second', '"2024-02-29T23:59:59Z"', logical('io.debezium.time.ZonedTimestamp', 'string'), undefined, '2024-02-29 23:59:59+00'],
  ['ZonedTimestamp not in UTC', '"2024-02-29T23:59:59+02:00"', logical('io.debezium.time.ZonedTimestamp', 'string'), undefined, undefined],
  ['MicroTime', '45296000001', logical('io.debezium.time.MicroTime'), undefined, '12:34:56.000001'],
  ['Time (ms)', '45296000', logical('io.debezium.time.Time', 'int32'), undefined, '12:34:56'],
  ['ZonedTime (offset lost)', '"12:34:56Z"', logical('io.debezium.time.ZonedTime', 'string'), undefined, undefined],
  ['MicroDuration', '3600000000', logical('io.debezium.time.MicroDuration'), undefined, undefined],
  // other logical and plain types
  ['Uuid', '"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"', logical('io.debezium.data.Uuid', 'string'), undefined, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['Json', '"{\\"a\\": 1}"', logical('io.debezium.data.Json', 'string'), undefined, '{"a": 1}'],
  ['Bits', '"AQ=="', logical('io.debezium.data.Bits', 'bytes'), undefined, undefined],
  ['a logical type nobody knows', '"x"', logical('io.debezium.data.geometry.Point', 'struct'), undefined, undefined],
  ['bytea', '"AQI="', { type: 'bytes' }, undefined, '\\x0102'],
  ['bytea as a string (binary.handling.mode=base64 or hex)', '"0102"', { type: 'string' }, col('bytea'), undefined],
  ['int64 past 2^53', '9007199254740993', { type: 'int64' }, undefined, '9007199254740993'],
  ['boolean', 'false', { type: 'boolean' }, undefined, 'false'],
  ['float64 0.1', '0.1', { type: 'float64' }, undefined, '0.1'],
  ['float64 100.0', '100.0', { type: 'float64' }, col('double precision'), '100'],
  ['float64 1e21', '1.0E21', { type: 'float64' }, undefined, '1e+21'],
  ['float64 1e-5', '1.0E-5', { type: 'float64' }, undefined, '1e-05'],
  ['float64 past 15 digits', '1.23456789012345678E17', { type: 'float64' }, undefined, '1.2345678901234568e+17'],
  ['float32 1000000', '1000000.0', { type: 'float32' }, undefined, '1e+06'],
  ['float32 1.1', '1.1', { type: 'float32' }, undefined, '1.1'],
  ['null', 'null', decimal(2), undefined, null],
  ['unchanged TOAST placeholder', '"__debezium_unavailable_value"', { type: 'string' }, undefined, undefined],
  ['no envelope, no catalog: taken as written', '"AdTA"', undefined, undefined, 'AdTA'],
];

describe('debezium values to PostgreSQL text', () => {
  it.each(CASES)('%s', (_what, json, field, column, expected) => {
    expect(textValue(parseJsonExact(json), field, column)).toBe(expected);
  });

  it.each([
    [120000n, 2, '1200.00'],
    [-5n, 3, '-0.005'],
    [12n, -2, '1200'],
    [-(10n ** 30n) - 1n, 1, '-100000000000000000000000000000.1'],
  ])('formatDecimal(%s, %s) = %s', (unscaled, scale, text) => {
    expect(formatDecimal(unscaled, scale)).toBe(text);
  });

  it.each([
    [0n, '1970-01-01 00:00:00'],
    [1709251199500000n, '2024-02-29 23:59:59.5'],
    [-1n, '1969-12-31 23:59:59.999999'],
    [1000001n, '1970-01-01 00:00:01.000001'],
  ])('formatTimestamp(%s) = %s', (micros, text) => {
    expect(formatTimestamp(micros)).toBe(text);
  });

  it('formatTimestamp and formatTime match their BigInt definitions, on both sides of 2^53 µs', () => {
    const DAY = 86_400_000_000n;
    const floorDiv = (a: bigint, b: bigint) => (a % b !== 0n && a < 0n !== b < 0n ? a / b - 1n : a / b);
    const time = (us: bigint) => {
      const s = us / 1_000_000n;
      const fraction = us % 1_000_000n;
      const two = (n: bigint) => String(n).padStart(2, '0');
      return `${two(s / 3600n)}:${two((s % 3600n) / 60n)}:${two(s % 60n)}${fraction === 0n ? '' : `.${String(fraction).padStart(6, '0').replace(/0+$/, '')}`}`;
    };
    const reference = (us: bigint) => {
      const days = floorDiv(us, DAY);
      const date = formatDate(days);
      return date === undefined ? undefined : `${date} ${time(us - days * DAY)}`;
    };
    const safe = BigInt(Number.MAX_SAFE_INTEGER);
    const values = [0n, 1n, -1n, DAY, DAY - 1n, -DAY, -DAY + 1n, -DAY - 1n, safe, safe + 1n, -safe, -safe - 1n, 1709251199500000n, -62135596800000000n, -62135596800000001n];
    let seed = 42;
    const random = () => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 20_000; i++) {
      const magnitude = BigInt(Math.floor(random() * 2 ** 31)) * BigInt(Math.floor(random() * 2 ** 23)) + BigInt(Math.floor(random() * 1_000_000));
      values.push(random() < 0.3 ? -magnitude : magnitude, magnitude - (magnitude % 1_000_000n), magnitude - (magnitude % 10_000n));
    }
    expect(values.filter((us) => formatTimestamp(us) !== reference(us))).toEqual([]);
    for (const us of [0n, 1n, 10n, 500_000n, 999_999n, 1_000_000n, 45_296_000_001n, DAY - 1n, DAY]) expect(formatTime(us)).toBe(time(us));
    expect(formatTime(-1n)).toBeUndefined();
    expect(formatTime(DAY + 1n)).toBeUndefined();
  });

  it('decimalFromBase64 of up to 6 bytes matches the BigInt decoding', () => {
    const reference = (text: string, scale: number) => formatDecimal(unscaledOf(Buffer.from(text, 'base64')), scale);
    const texts = ['', 'AA==', 'AQ==', '/w==', 'gA==', 'AIA=', 'f/8=', 'gAA=', 'AdTA', 'DUg=', '/2o=', 'AB==', 'AP/=', 'f////w==', 'gAAAAA==', '////////', 'gAAAAAAA', 'f///////', 'AQID'];
    let seed = 7;
    for (let i = 0; i < 5_000; i++) {
      const bytes = Buffer.alloc(i % 7);
      for (let j = 0; j < bytes.length; j++) bytes[j] = (seed = (seed * 69_069 + 1) % 2 ** 32) >>> 24;
      texts.push(bytes.toString('base64'));
    }
    const wrong = [0, 1, 2, 5, 9, 20].flatMap((scale) => texts.filter((text) => decimalFromBase64(text, scale) !== reference(text, scale)).map((text) => `${text} at ${scale}`));
    expect(wrong).toEqual([]);
    expect(decimalFromBase64('AdTA', -2)).toBe('12000000');
  });

  it('formatDate writes what Date#toISOString writes, across 0001-01-01 to 9999-12-31', () => {
    const iso = (days: number) => new Date(days * 86_400_000).toISOString().slice(0, 10);
    // Every 7th day, and around the ends, the epoch and the leap days of 1900, 2000 and 2024.
    const days = [-719_162, -719_161, -1, 0, 1, -25_509, -25_508, 11_016, 11_017, 19_782, 19_783, 2_932_895, 2_932_896];
    for (let d = -719_162; d <= 2_932_896; d += 7) days.push(d);
    expect(days.filter((d) => formatDate(BigInt(d)) !== iso(d))).toEqual([]);
    expect(formatDate(-719_163n)).toBeUndefined();
    expect(formatDate(2_932_897n)).toBeUndefined();
  });

  it.each([
    ['-0.0', 64, '-0'],
    ['0.0001', 64, '0.0001'],
    ['123456789012345.0', 64, '123456789012345'],
    ['1.0E15', 64, '1e+15'],
    ['-2.5E-7', 32, '-2.5e-07'],
  ] as const)('formatFloat(%s, %s) = %s', (text, bits, expected) => {
    expect(formatFloat(text, bits)).toBe(expected);
  });

  it.each([
    ['numeric', 786438, { precision: 12, scale: 2 }],
    ['numeric', -1, { precision: null, scale: null }],
    ['numeric', (5 << 16) + 2047 + 4, { precision: 5, scale: -1 }],
    ['timestamp without time zone', 3, { precision: 3, scale: null }],
    ['text', -1, { precision: null, scale: null }],
  ])('catalog type %s with typmod %s', (type, typmod, expected) => {
    expect(columnType(type, typmod)).toEqual({ type, ...expected });
  });
});
