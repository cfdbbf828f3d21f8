/**
 * Kafka Connect's decimals back to PostgreSQL's numeric text form. With the connector's default
 * `decimal.handling.mode=precise`, a NUMERIC(p,s) column is a `Decimal`: the unscaled integer as
 * big-endian two's complement bytes (base64 in JSON), the scale in the schema's parameters.
 * PostgreSQL writes a numeric with exactly its scale ("1200.00"), so the scale decides the digits
 * after the point.
 * BigInt throughout: a numeric key may be far past 2^53.
 */

/** Base64 (standard alphabet, padded, as the JSON converter writes bytes). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** A plain decimal, as PostgreSQL (and decimal.handling.mode=string) writes one. */
const PLAIN_DECIMAL = /^-?\d+(?:\.\d+)?$/;

/** The signed integer encoded by big-endian two's complement bytes. */
export function unscaledOf(bytes: Buffer): bigint {
  if (bytes.length === 0) return 0n;
  const magnitude = BigInt(`0x${bytes.toString('hex')}`);
  return (bytes[0]! & 0x80) === 0 ? magnitude : magnitude - (1n << BigInt(bytes.length * 8));
}

/** unscaled × 10^-scale in PostgreSQL's numeric output form. */
export function formatDecimal(unscaled: bigint, scale: number): string {
  if (scale <= 0) return (unscaled * 10n ** BigInt(-scale)).toString();
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  return `${negative ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/** A base64 `Decimal` value with its scale; undefined when the text is not base64. */
export function decimalFromBase64(text: string, scale: number): string | undefined {
  if (!BASE64.test(text) || !Number.isInteger(scale)) return undefined;
  // Up to 6 bytes (8 base64 characters), the common case of prices and amounts, a double holds
  // the unscaled value exactly: decoded without a Buffer or a BigInt.
  if (text.length <= 8 && scale >= 0) return formatSmallDecimal(smallUnscaledOf(text), scale);
  return formatDecimal(unscaledOf(Buffer.from(text, 'base64')), scale);
}

const BASE64_DIGITS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** unscaledOf for the base64 of at most 6 bytes (the text already checked against BASE64). */
function smallUnscaledOf(text: string): number {
  let bits = 0;
  let value = 0;
  for (let i = 0; i < text.length && text[i] !== '='; i++) {
    value = value * 64 + BASE64_DIGITS.indexOf(text[i]!);
    bits += 6;
  }
  // The bits after the last whole byte are padding, dropped as Buffer.from drops them.
  const bytes = Math.floor(bits / 8);
  value = Math.floor(value / 2 ** (bits - bytes * 8));
  const range = 2 ** (bytes * 8);
  return bytes > 0 && value >= range / 2 ? value - range : value;
}

/** formatDecimal for a safe integer and a scale of 0 or more. */
function formatSmallDecimal(unscaled: number, scale: number): string {
  if (scale === 0) return String(unscaled);
  const digits = String(Math.abs(unscaled)).padStart(scale + 1, '0');
  return `${unscaled < 0 ? '-' : ''}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}

/**
 * A decimal written as digits (a JSON number with the converter's `decimal.format=NUMERIC`, or a
 * string) with a known scale: re-scaled exactly, so "1200" and "1.2E+3" give "1200.00" at scale 2.
 * Undefined when the digits do not fit the scale without rounding, or are not a number.
 */
export function decimalFromDigits(text: string, scale: number): string | undefined {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (m === null || !Number.isInteger(scale)) return undefined;
  const fraction = m[3] ?? '';
  let unscaled = BigInt(`${m[2]}${fraction}`);
  // The number is unscaled × 10^-shift; bring it to `scale`.
  const shift = fraction.length - Number(m[4] ?? '0');
  if (shift > scale) {
    const divisor = 10n ** BigInt(shift - scale);
    if (unscaled % divisor !== 0n) return undefined;
    unscaled /= divisor;
  } else {
    unscaled *= 10n ** BigInt(scale - shift);
  }
  return formatDecimal(m[1] === '-' ? -unscaled : unscaled, scale);
}

/** The text is what decimal.handling.mode=string (and PostgreSQL) writes for a numeric. */
export function isPlainDecimal(text: string): boolean {
  return PLAIN_DECIMAL.test(text) || text === 'NaN' || text === 'Infinity' || text === '-Infinity';
}

/** The text could be a base64 `Decimal`. */
export function isBase64(text: string): boolean {
  return text.length > 0 && BASE64.test(text);
}
