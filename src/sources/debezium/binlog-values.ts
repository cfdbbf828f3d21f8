import type { Value } from '../../core/change.js';
import { isBase64 } from './decimal.js';
import { formatFloat } from './temporal.js';
import { fromLogical, JsonNumber, primitive, UNAVAILABLE, type FieldType } from './values.js';

/**
 * Values of Debezium's MySQL and MariaDB connectors (JSON converter with the schema envelope) in
 * the one text form keys are rendered in, PostgreSQL's where the types match, so that a mapping
 * file gives the same keys on either database:
 *
 * - integer types as digits; BIGINT UNSIGNED past 2^63 only when it arrives exactly
 *   (`bigint.unsigned.handling.mode=precise`, a Decimal of scale 0, or its source type propagated);
 * - DECIMAL(p,s) with its s digits after the point (`1200.50`), from the default `precise` encoding;
 * - DATE `2024-02-29`; DATETIME `2024-02-29 23:59:59.123456` (the fraction without trailing zeros,
 *   as PostgreSQL writes a timestamp); TIMESTAMP in UTC `2024-02-29 23:59:59.5+00` (timestamptz with
 *   TimeZone=UTC); TIME `12:34:56.000001` within a day (a negative TIME or one past 24:00:00 is
 *   unknown); YEAR as digits;
 * - BIT(1) `true`/`false` (Debezium sends it as a boolean); BIT(n) as its n bits, most significant
 *   first (`1000000001`, PostgreSQL's bit(n) text);
 * - ENUM its label, SET its labels joined by commas, JSON as the connector writes it, CHAR/TEXT as is;
 * - BINARY/VARBINARY/BLOB `\x0102ff`; FLOAT/DOUBLE in shortest digits.
 *
 * Whatever the envelope does not pin down (a geometry, an unknown logical type, a value that does
 * not fit its type) is unknown, never rendered as it came.
 */
export function binlogTextValue(value: unknown, field: FieldType | undefined): Value | undefined {
  if (value === null) return null;
  if (value === undefined || value === UNAVAILABLE || field === undefined) return undefined;
  if (field.name !== undefined) {
    switch (field.name) {
      case 'io.debezium.time.Year':
        return value instanceof JsonNumber && /^\d+$/.test(value.text) ? value.text : undefined;
      case 'io.debezium.data.Bits':
        return typeof value === 'string' ? bitsText(value, field.length) : undefined;
      case 'io.debezium.data.Json':
      case 'io.debezium.data.Enum':
      case 'io.debezium.data.EnumSet':
        return typeof value === 'string' ? value : undefined;
      default:
        return fromLogical(value, field);
    }
  }
  const signedness = unsignedness(field.sourceType);
  switch (field.type) {
    case 'int64':
      if (!(value instanceof JsonNumber) || !/^-?\d+$/.test(value.text)) return undefined;
      if (!value.text.startsWith('-')) return value.text;
      // bigint.unsigned.handling.mode=long (the default) wraps values past 2^63 to negatives.
      // Without the source type nothing tells a wrapped BIGINT UNSIGNED from a negative BIGINT.
      if (signedness === 'unsigned') return (BigInt(value.text) + (1n << 64n)).toString();
      return signedness === 'signed' ? value.text : undefined;
    case 'int8':
    case 'int16':
    case 'int32':
    case 'boolean':
      return primitive(value);
    // Kafka Connect's FLOAT32 and FLOAT64, which the JSON converter's envelope calls float and double.
    case 'float':
    case 'double':
    case 'float32':
    case 'float64':
      if (!(value instanceof JsonNumber)) return undefined;
      // decimal.handling.mode=double: a DECIMAL's scale is lost ("1200.5" for 1200.50).
      if (field.sourceType !== undefined && /^(DECIMAL|NUMERIC|DEC|FIXED)\b/i.test(field.sourceType)) return undefined;
      return formatFloat(value.text, field.type === 'double' || field.type === 'float64' ? 64 : 32);
    case 'string':
      return typeof value === 'string' ? value : undefined;
    case 'bytes':
      // An empty VARBINARY is the empty string, which is base64 too.
      return typeof value === 'string' && (value === '' || isBase64(value)) ? `\\x${Buffer.from(value, 'base64').toString('hex')}` : undefined;
    default:
      // Structs (geometries) and arrays have no single text form.
      return undefined;
  }
}

/** Whether a propagated source type ("BIGINT UNSIGNED", "BIGINT") says unsigned; undefined when not propagated. */
function unsignedness(sourceType: string | undefined): 'signed' | 'unsigned' | undefined {
  if (sourceType === undefined) return undefined;
  return /\bUNSIGNED\b/i.test(sourceType) ? 'unsigned' : 'signed';
}

/**
 * io.debezium.data.Bits: the column's bits as little-endian bytes (base64 in JSON), `length` of
 * them; PostgreSQL writes a bit(n) as its n bits, the most significant first.
 */
export function bitsText(base64: string, length: number | undefined): string | undefined {
  if (length === undefined || !Number.isInteger(length) || length < 1 || !isBase64(base64)) return undefined;
  const bytes = Buffer.from(base64, 'base64');
  if (bytes.length * 8 < length) return undefined;
  let bits = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) bits = (bits << 8n) | BigInt(bytes[i]!);
  // Bits above `length` must be zero, or the value is not what the column can hold.
  if (bits >> BigInt(length) !== 0n) return undefined;
  return bits.toString(2).padStart(length, '0');
}
