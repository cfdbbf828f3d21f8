/**
 * A PostgreSQL log sequence number. Kept as a branded bigint so that it can only be made by parsing
 * a well-formed `XXXXXXXX/XXXXXXXX` string (or from the 64-bit wire value), and compares exactly.
 */
export type Lsn = bigint & { readonly __lsn: unique symbol };

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const MAX = (1n << 64n) - 1n;

export const ZERO_LSN = 0n as Lsn;

export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text);
  if (!m) throw new TypeError(`not an LSN: ${JSON.stringify(text)}`);
  return ((BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`)) as Lsn;
}

export function lsnFromBigInt(value: bigint): Lsn {
  if (value < 0n || value > MAX) throw new RangeError(`LSN out of range: ${value}`);
  return value as Lsn;
}

export function formatLsn(lsn: Lsn): string {
  const hi = (lsn >> 32n).toString(16).toUpperCase();
  const lo = (lsn & 0xffffffffn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}
