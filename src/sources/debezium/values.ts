import type { Value } from '../../core/change.js';
import { decimalFromBase64, decimalFromDigits, isBase64, isPlainDecimal } from './decimal.js';
import { formatDate, formatFloat, formatTime, formatTimestamp, formatZonedTimestamp } from './temporal.js';

/**
 * Debezium's JSON converter writes values by their Kafka Connect schema: numbers, strings,
 * booleans, and logical types encoded as numbers, strings or structs. Keys must come out as they do
 * from the Postgres source, in PostgreSQL's text form, so each value is turned back into it from
 * what is known of it: the schema envelope (converter `schemas.enable=true`) names its logical
 * type; without it, the column's type read from the database catalog (`source.url`) stands in.
 * Whatever cannot be turned back exactly is unknown (undefined), never rendered as it came: a
 * base64 numeric or a day count in a key would be a key nobody reads, and the real one would stay.
 */

/** Marks a JSON number kept as the digits written (an int8 past 2^53 must not be rounded). */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** JSON.parse that keeps numbers as their source text (Node 22+ passes it to the reviver). */
export function parseJsonExact(text: string): unknown {
  return JSON.parse(text, (_key, value: unknown, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined ? new JsonNumber(context.source) : value,
  );
}

/** Debezium's placeholder for an unchanged TOASTed value it could not read: unknown, never a value. */
export const UNAVAILABLE = '__debezium_unavailable_value';

/** What the schema envelope says of a field. */
export interface FieldType {
  /** Connect type: int32, int64, string, boolean, bytes, float64, struct... */
  type?: string;
  /** Logical type name, e.g. io.debezium.time.MicroTimestamp. */
  name?: string;
  /** parameters.scale of a Decimal. */
  scale?: number;
  /** parameters.length of io.debezium.data.Bits: the column's number of bits. */
  length?: number;
  /** parameters.__debezium.source.column.type, when the connector propagates source types ("BIGINT UNSIGNED"). */
  sourceType?: string;
}

/** What the database catalog says of a column. */
export interface ColumnType {
  /** The (base) type as format_type names it without modifiers: numeric, timestamp without time zone... */
  type: string;
  /** Declared precision: numeric(p,s)'s p, time(p) and timestamp(p)'s p; null when not declared. */
  precision: number | null;
  /** Declared scale of numeric(p,s); null when not declared. */
  scale: number | null;
}

/**
 * A column's type from the catalog's type name and typmod. numeric's typmod holds
 * (precision << 16 | scale) + 4, the scale as 11 signed bits (PostgreSQL 15).
 */
export function columnType(type: string, typmod: number): ColumnType {
  if (typmod < 0) return { type, precision: null, scale: null };
  if (type === 'numeric') {
    const packed = typmod - 4;
    return { type, precision: (packed >> 16) & 0xffff, scale: ((packed & 0x7ff) ^ 1024) - 1024 };
  }
  if (type.startsWith('time')) return { type, precision: typmod, scale: null };
  return { type, precision: null, scale: null };
}

/** Types whose PostgreSQL text Debezium's value cannot give back: money (locale), interval, timetz (offset), bits. */
const UNREPRODUCIBLE = new Set(['money', 'interval', 'time with time zone', 'bit', 'bit varying']);

/** Logical types whose string is already PostgreSQL's text. */
const VERBATIM = new Set(['io.debezium.data.Json', 'io.debezium.data.Xml', 'io.debezium.data.Enum', 'io.debezium.data.EnumSet', 'io.debezium.data.Ltree']);

/** Doubles carry about 15 significant digits: a numeric with at most that many survives one exactly. */
const DOUBLE_DIGITS = 15;

/** One value in PostgreSQL's text form, or undefined when it is unknown. */
export function textValue(value: unknown, field: FieldType | undefined, column?: ColumnType): Value | undefined {
  if (value === null) return null;
  if (value === undefined || value === UNAVAILABLE) return undefined;
  if (column !== undefined && (UNREPRODUCIBLE.has(column.type) || column.type.endsWith('[]'))) return undefined;
  if (field?.name !== undefined) return fromLogical(value, field);
  if (field?.type !== undefined) return fromConnectType(value, field.type, column);
  if (column !== undefined) return fromColumnType(value, column);
  return primitive(value);
}

export function fromLogical(value: unknown, field: FieldType): Value | undefined {
  const n = value instanceof JsonNumber && /^-?\d+$/.test(value.text) ? BigInt(value.text) : undefined;
  switch (field.name) {
    case 'org.apache.kafka.connect.data.Decimal':
      if (field.scale === undefined) return undefined;
      if (typeof value === 'string') return decimalFromBase64(value, field.scale);
      // The converter's decimal.format=NUMERIC writes the exact digits.
      return value instanceof JsonNumber ? decimalFromDigits(value.text, field.scale) : undefined;
    case 'io.debezium.data.VariableScaleDecimal':
      // A NUMERIC without a declared scale. PostgreSQL writes it with the scale it was given
      // ("-905.0"); Debezium drops the trailing zeros (-905), and nothing says how many there were.
      return undefined;
    case 'io.debezium.time.Date':
    case 'org.apache.kafka.connect.data.Date':
      return n === undefined ? undefined : formatDate(n);
    case 'io.debezium.time.Time':
    case 'org.apache.kafka.connect.data.Time':
      return n === undefined ? undefined : formatTime(n * 1000n);
    case 'io.debezium.time.MicroTime':
      return n === undefined ? undefined : formatTime(n);
    case 'io.debezium.time.NanoTime':
      return n === undefined ? undefined : formatTime(n / 1000n);
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return n === undefined ? undefined : formatTimestamp(n * 1000n);
    case 'io.debezium.time.MicroTimestamp':
      return n === undefined ? undefined : formatTimestamp(n);
    case 'io.debezium.time.NanoTimestamp':
      return n === undefined ? undefined : formatTimestamp(n / 1000n);
    case 'io.debezium.time.ZonedTimestamp':
      return typeof value === 'string' ? formatZonedTimestamp(value) : undefined;
    case 'io.debezium.data.Uuid':
      return typeof value === 'string' ? value.toLowerCase() : undefined;
    default:
      // ZonedTime (the offset is lost), MicroDuration, Bits, geometries, and anything new: unknown.
      return VERBATIM.has(field.name!) && typeof value === 'string' ? value : undefined;
  }
}

function fromConnectType(value: unknown, type: string, column: ColumnType | undefined): Value | undefined {
  const numeric = column?.type === 'numeric';
  switch (type) {
    case 'bytes':
      return typeof value === 'string' && isBase64(value) ? `\\x${Buffer.from(value, 'base64').toString('hex')}` : undefined;
    // Kafka Connect's FLOAT64 and FLOAT32, which the JSON converter's envelope calls double and float.
    case 'float64':
    case 'double':
    case 'float32':
    case 'float':
      if (!(value instanceof JsonNumber)) return undefined;
      // decimal.handling.mode=double: exact only when the column's precision says few enough digits.
      if (numeric) return doubleAsNumeric(value.text, column!);
      return formatFloat(value.text, type === 'float64' || type === 'double' ? 64 : 32);
    case 'string':
      // decimal.handling.mode=string writes PostgreSQL's own text, display scale included.
      if (numeric && !isPlainDecimal(value as string)) return undefined;
      // binary.handling.mode=base64 or hex: the schema no longer says which, and both can read as either.
      if (column?.type === 'bytea') return undefined;
      return typeof value === 'string' ? value : undefined;
    case 'int8':
    case 'int16':
    case 'int32':
    case 'int64':
    case 'boolean':
      return primitive(value);
    default:
      return undefined;
  }
}

/** No schema envelope: the catalog's column type says how the value was encoded. */
function fromColumnType(value: unknown, column: ColumnType): Value | undefined {
  const n = value instanceof JsonNumber ? value.text : undefined;
  switch (column.type) {
    case 'numeric':
      return numericWithoutSchema(value, column);
    case 'date':
      return n !== undefined && /^-?\d+$/.test(n) ? formatDate(BigInt(n)) : undefined;
    case 'timestamp without time zone':
      // time.precision.mode=adaptive (and adaptive_time_microseconds): ms up to timestamp(3), else µs.
      if (n === undefined || !/^-?\d+$/.test(n)) return undefined;
      return formatTimestamp(column.precision !== null && column.precision <= 3 ? BigInt(n) * 1000n : BigInt(n));
    case 'timestamp with time zone':
      return typeof value === 'string' ? formatZonedTimestamp(value) : undefined;
    case 'time without time zone':
      // time(0..3) is ms under adaptive and µs under adaptive_time_microseconds: nothing tells which.
      if (n === undefined || !/^\d+$/.test(n) || (column.precision !== null && column.precision <= 3)) return undefined;
      return formatTime(BigInt(n));
    case 'bytea':
      return typeof value === 'string' && isBase64(value) ? `\\x${Buffer.from(value, 'base64').toString('hex')}` : undefined;
    case 'double precision':
    case 'real':
      return n === undefined ? undefined : formatFloat(n, column.type === 'real' ? 32 : 64);
    case 'uuid':
      return typeof value === 'string' ? value.toLowerCase() : undefined;
    default:
      return primitive(value);
  }
}

/**
 * A numeric without the envelope: a base64 Decimal (precise), its text (string) or a double
 * (double). A string that reads both as a plain number and as base64 ("1234" at scale 0) is
 * unknown: guessing either way could render a wrong key. Without a declared scale, precise sends
 * a VariableScaleDecimal struct (unknown, see above), so a string is the text.
 */
function numericWithoutSchema(value: unknown, column: ColumnType): Value | undefined {
  if (value instanceof JsonNumber) return doubleAsNumeric(value.text, column);
  if (typeof value !== 'string') return undefined;
  const plain = isPlainDecimal(value);
  if (column.scale === null) return plain ? value : undefined;
  const base64 = isBase64(value);
  if (plain && (!base64 || value.includes('.') || value.startsWith('-'))) return value;
  // PostgreSQL writes a numeric(p,s) with s > 0 with a point: such a value without one is base64.
  if (base64 && (!plain || column.scale > 0)) return decimalFromBase64(value, column.scale);
  return undefined;
}

function doubleAsNumeric(text: string, column: ColumnType): Value | undefined {
  if (column.precision === null || column.scale === null || column.precision > DOUBLE_DIGITS) return undefined;
  return decimalFromDigits(text, column.scale);
}

export function primitive(value: unknown): Value | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof JsonNumber) return value.text;
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  // Structs and arrays have no single text form a key could use.
  return undefined;
}
