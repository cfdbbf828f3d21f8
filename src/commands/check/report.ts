import { plural } from '../../lib/text.js';
/** One verdict of `check`: what was found, and for anything not ok, what to do about it. */
export interface CheckLine {
  status: 'ok' | 'warn' | 'fail';
  text: string;
  /** The exact SQL or config change to make. */
  fix?: string;
}

export const ok = (text: string): CheckLine => ({ status: 'ok', text });
export const warn = (text: string, fix?: string): CheckLine =>
  fix === undefined ? { status: 'warn', text } : { status: 'warn', text, fix };
export const fail = (text: string, fix?: string): CheckLine =>
  fix === undefined ? { status: 'fail', text } : { status: 'fail', text, fix };

const LABEL: Record<CheckLine['status'], string> = { ok: 'ok    ', warn: 'warn  ', fail: 'FAIL  ' };
const INDENT = ' '.repeat(6);

/**
 * The report as printed: one line per check, a `fix:` line under each problem, and a summary.
 * Every secret (passwords from the connection URLs) is masked, whatever line it turned up in.
 */
export function formatReport(lines: readonly CheckLine[], secrets: readonly string[] = []): string {
  const out: string[] = [];
  for (const line of lines) {
    out.push(LABEL[line.status] + line.text);
    if (line.fix !== undefined) {
      const [first, ...rest] = line.fix.split('\n');
      out.push(`${INDENT}fix: ${first}`);
      for (const more of rest) out.push(`${INDENT}     ${more}`);
    }
  }
  out.push(summary(lines));
  return maskSecrets(`${out.join('\n')}\n`, secrets);
}

export function summary(lines: readonly CheckLine[]): string {
  const count = (status: CheckLine['status']) => lines.filter((l) => l.status === status).length;
  const problems = count('fail');
  const warnings = count('warn');
  return (
    `${count('ok')} ok, ${plural(warnings, 'warning')}, ${plural(problems, 'problem')}` +
    (problems === 0 ? ': ready to run' : ': fix the problems above before running the worker')
  );
}

/** 0 when nothing failed (warnings allowed), 1 otherwise. */
export function exitCode(lines: readonly CheckLine[]): 0 | 1 {
  return lines.some((l) => l.status === 'fail') ? 1 : 0;
}

/**
 * Lines are built from parsed settings and never from a URL, so this is a second line of defence
 * (a driver message quoting its input). Strings under 4 characters would mask ordinary words.
 */
export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text;
  // Longest first, so that a secret containing another is masked whole.
  for (const secret of [...new Set(secrets)].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)) {
    out = out.replaceAll(secret, '***');
  }
  return out;
}

export { listing, plural, quoted } from '../../lib/text.js';

const PLAIN_NAME = /^[a-z_][a-z0-9_$]*$/;

/**
 * A table name for messages: `public.users`, or `public."My Table"` when a part needs quotes to be
 * read back as written. (SQL in fixes uses the server's own quote_ident instead.)
 */
export function displayName(schema: string, table: string): string {
  const part = (name: string) => (PLAIN_NAME.test(name) ? name : `"${name.replaceAll('"', '""')}"`);
  return `${part(schema)}.${part(table)}`;
}

/** Bytes as people read them: `512 bytes`, `1.5 MB`, `12 GB` (powers of 1024, as pg_size_pretty). */
export function formatBytes(bytes: number): string {
  const units = ['bytes', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) return `${value} bytes`;
  const digits = value >= 100 ? 0 : 1;
  return `${value.toFixed(digits).replace(/\.0$/, '')} ${units[unit]}`;
}
