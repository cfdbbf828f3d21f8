import type { Value } from '../../core/change.js';

/**
 * Debezium's JSON converter writes values by their Kafka Connect schema: numbers, strings,
 * booleans, and logical types encoded as numbers or strings. Keys must come out as they do from
 * the Postgres source, in PostgreSQL's text form, so logical types are turned back into it when
 * the schema envelope says what they are (converter `schemas.enable=true`). README lists the
 * connector settings this needs.
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

export interface FieldType {
  /** Connect type: int32, int64, string, boolean, bytes, float64, struct... */
  type?: string;
  /** Logical type name, e.g. io.debezium.time.MicroTimestamp. */
  name?: string;
}

/** One value in PostgreSQL's text form, or undefined when it is unknown. */
export function textValue(value: unknown, field: FieldType | undefined): Value | undefined {
  if (value === null) return null;
  if (value === undefined) return undefined;
  if (typeof value === 'string') {
    if (value === UNAVAILABLE) return undefined;
    return fromString(value, field);
  }
  if (value instanceof JsonNumber) return fromNumber(value.text, field);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') return fromNumber(String(value), field);
  // Structs and arrays have no single text form a key could use.
  return undefined;
}

function fromNumber(digits: string, field: FieldType | undefined): string {
  switch (field?.name) {
    case 'io.debezium.time.Date':
      return formatDate(BigInt(digits) * 86_400_000_000n);
    case 'io.debezium.time.Timestamp':
    case 'org.apache.kafka.connect.data.Timestamp':
      return formatTimestamp(BigInt(digits) * 1000n);
    case 'io.debezium.time.MicroTimestamp':
      return formatTimestamp(BigInt(digits));
    case 'io.debezium.time.NanoTimestamp':
      return formatTimestamp(BigInt(digits) / 1000n);
    case 'io.debezium.time.MicroTime':
      return formatTime(BigInt(digits));
    case 'io.debezium.time.Time':
      return formatTime(BigInt(digits) * 1000n);
    default:
      return digits;
  }
}

function fromString(text: string, field: FieldType | undefined): string {
  if (field?.name === 'io.debezium.time.ZonedTimestamp') {
    // 2024-02-29T23:59:59.5Z: PostgreSQL writes timestamptz in the session time zone; with
    // TimeZone=UTC (the form the keys are documented in) that is 2024-02-29 23:59:59.5+00.
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2}(?:\.\d+)?)Z$/.exec(text);
    if (m) return `${m[1]} ${m[2]}+00`;
  }
  if (field?.type === 'bytes') {
    return `\\x${Buffer.from(text, 'base64').toString('hex')}`;
  }
  return text;
}

/** µs since the epoch to PostgreSQL's `timestamp` text form (UTC, trailing zeros of the fraction dropped). */
export function formatTimestamp(micros: bigint): string {
  return `${formatDate(micros)} ${formatTime(((micros % 86_400_000_000n) + 86_400_000_000n) % 86_400_000_000n)}`;
}

function formatDate(micros: bigint): string {
  const days = Number((micros - (((micros % 86_400_000_000n) + 86_400_000_000n) % 86_400_000_000n)) / 86_400_000_000n);
  return new Date(days * 86_400_000).toISOString().slice(0, 10);
}

function formatTime(microsOfDay: bigint): string {
  const totalSeconds = microsOfDay / 1_000_000n;
  const fraction = microsOfDay % 1_000_000n;
  const h = String(totalSeconds / 3600n).padStart(2, '0');
  const m = String((totalSeconds % 3600n) / 60n).padStart(2, '0');
  const s = String(totalSeconds % 60n).padStart(2, '0');
  const f = fraction === 0n ? '' : `.${String(fraction).padStart(6, '0').replace(/0+$/, '')}`;
  return `${h}:${m}:${s}${f}`;
}
