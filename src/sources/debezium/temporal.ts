/**
 * Debezium's encodings of dates, times and floating-point numbers, back to PostgreSQL's text form
 * (DateStyle ISO, TimeZone UTC, extra_float_digits 1: the server defaults keys are documented in).
 * Each returns undefined for what PostgreSQL would write differently (BC dates, years past 9999,
 * infinities): an unknown value is dead-lettered or falls back, a wrong one would be a silent miss.
 */

const MICROS_PER_DAY = 86_400_000_000n;
const MICROS_PER_DAY_NUMBER = 86_400_000_000;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** µs since the epoch to `timestamp` text (fraction without trailing zeros). */
export function formatTimestamp(micros: bigint): string | undefined {
  if (micros >= -MAX_SAFE && micros <= MAX_SAFE) {
    // Up to the year 2255 either way: doubles hold these integers, and % (exact) and the division
    // of a multiple of a day keep them.
    const us = Number(micros);
    const ofDay = ((us % MICROS_PER_DAY_NUMBER) + MICROS_PER_DAY_NUMBER) % MICROS_PER_DAY_NUMBER;
    const date = dateText((us - ofDay) / MICROS_PER_DAY_NUMBER);
    return date === undefined ? undefined : `${date} ${timeText(ofDay)}`;
  }
  const date = formatDate(floorDiv(micros, MICROS_PER_DAY));
  return date === undefined ? undefined : `${date} ${formatTime(micros - floorDiv(micros, MICROS_PER_DAY) * MICROS_PER_DAY)}`;
}

/** Days since the epoch to `date` text. */
export function formatDate(days: bigint): string | undefined {
  return days < -719_162n || days > 2_932_896n ? undefined : dateText(Number(days));
}

function dateText(days: number): string | undefined {
  // 0001-01-01 and 9999-12-31: outside them PostgreSQL writes "BC" or a five-digit year.
  if (days < -719_162 || days > 2_932_896) return undefined;
  // The proleptic Gregorian date, as Date#toISOString gives it (every day of the range checked),
  // without a Date: H. Hinnant's civil_from_days, counting from 0000-03-01 so that a leap day
  // ends each 4-, 100- and 400-year cycle.
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1_460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const shiftedMonth = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * shiftedMonth + 2) / 5) + 1;
  const month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9;
  const year = era * 400 + yearOfEra + (month <= 2 ? 1 : 0);
  return `${String(year).padStart(4, '0')}-${twoDigits(month)}-${twoDigits(day)}`;
}

function twoDigits(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** µs since midnight to `time` text; undefined outside a day (24:00:00 included, as PostgreSQL allows). */
export function formatTime(microsOfDay: bigint): string | undefined {
  if (microsOfDay < 0n || microsOfDay > MICROS_PER_DAY) return undefined;
  return timeText(Number(microsOfDay));
}

/**
 * µs in [0, 24:00:00] to `time` text. The quotients of these integers are far enough from the
 * next integer for Math.floor of a double division to be exact.
 */
function timeText(microsOfDay: number): string {
  const totalSeconds = Math.floor(microsOfDay / 1_000_000);
  let fraction = microsOfDay - totalSeconds * 1_000_000;
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds - h * 3600) / 60);
  const s = totalSeconds - h * 3600 - m * 60;
  let f = '';
  if (fraction !== 0) {
    let width = 6;
    for (; fraction % 10 === 0; width--) fraction /= 10;
    f = `.${String(fraction).padStart(width, '0')}`;
  }
  return `${twoDigits(h)}:${twoDigits(m)}:${twoDigits(s)}${f}`;
}

/**
 * Debezium's ZonedTimestamp ("2024-02-29T23:59:59.5Z", always UTC) to `timestamptz` text as
 * PostgreSQL writes it with TimeZone=UTC ("2024-02-29 23:59:59.5+00").
 */
export function formatZonedTimestamp(text: string): string | undefined {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z$/.exec(text);
  if (m === null || m[1] === '0000-00-00') return undefined;
  const fraction = (m[3] ?? '').slice(0, 6).replace(/0+$/, '');
  return `${m[1]} ${m[2]}${fraction === '' ? '' : `.${fraction}`}+00`;
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/**
 * A float8 (`bits` 64) or float4 (32) as PostgreSQL writes it: the shortest digits that read back
 * the same value, in fixed notation when the decimal exponent is in [-4, 15) (float4: [-4, 6)), like
 * printf's %g, else as 1.5e+20. A float64 is re-read as a double and its shortest digits taken (Java's
 * Double.toString is not always shortest); a float32's digits are Java's Float.toString, kept.
 */
export function formatFloat(text: string, bits: 32 | 64): string | undefined {
  let digitsText = text;
  if (bits === 64) {
    const n = Number(text);
    if (!Number.isFinite(n)) return undefined;
    digitsText = Object.is(n, -0) ? '-0' : n.toExponential();
  }
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(digitsText);
  if (m === null) return undefined;
  const all = `${m[2]}${m[3] ?? ''}`;
  const leading = all.length - all.replace(/^0+/, '').length;
  const digits = all.slice(leading).replace(/0+$/, '');
  if (digits === '') return m[1] === '-' ? '-0' : '0';
  // Decimal exponent of the first significant digit.
  const exponent = m[2]!.length - 1 - leading + Number(m[4] ?? '0');
  const sign = m[1];
  if (exponent < -4 || exponent >= (bits === 64 ? 15 : 6)) {
    const mantissa = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    const e = Math.abs(exponent);
    return `${sign}${mantissa}e${exponent < 0 ? '-' : '+'}${e < 10 ? `0${e}` : e}`;
  }
  if (exponent < 0) return `${sign}0.${'0'.repeat(-exponent - 1)}${digits}`;
  if (digits.length <= exponent + 1) return `${sign}${digits}${'0'.repeat(exponent + 1 - digits.length)}`;
  return `${sign}${digits.slice(0, exponent + 1)}.${digits.slice(exponent + 1)}`;
}
