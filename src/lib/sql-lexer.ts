/**
 * Just enough of PostgreSQL's lexer (src/backend/parser/scan.l) to tell where a statement's `$n`
 * placeholders and `;` are: everything else it skips. What hides a `$1` from the server hides it
 * from this scan too: string constants ('…', E'…', B'…', X'…', N'…', U&'…'), quoted identifiers
 * ("…", U&"…"), dollar-quoted strings ($$…$$, $tag$…$tag$), -- and nested /* … *\/ comments, and
 * identifiers, which may contain `$` (`a$1` is one name).
 */

export interface Placeholder {
  /** n of `$n`. */
  index: number;
  start: number;
  end: number;
}

/** A `:name` placeholder, as ORMs and query builders write them (never part of a `::type` cast). */
export interface NamedPlaceholder {
  name: string;
  start: number;
  end: number;
}

export interface SqlScan {
  placeholders: Placeholder[];
  /** `:name` outside literals and comments; PostgreSQL itself has none: see numberNamedPlaceholders. */
  named: NamedPlaceholder[];
  /** Offsets of every `;` outside literals and comments. */
  semicolons: number[];
  /**
   * Where the statement's text ends: only whitespace, comments and `;` follow. Cutting the text
   * here leaves one statement that can be wrapped in parentheses.
   */
  end: number;
  /** Why the text cannot be scanned reliably (an unterminated literal or comment, `$1abc`), or null. */
  problem: string | null;
}

export interface ScanOptions {
  /**
   * The server's standard_conforming_strings (on by default since PostgreSQL 9.1): off, a backslash
   * escapes the next character in '…' too, not only in E'…'.
   */
  standardConformingStrings?: boolean;
}

const isSpace = (c: string) => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
const isDigit = (c: string) => c >= '0' && c <= '9';
/** scan.l's ident_start and dolq_start: letters, `_` and every non-ASCII character. */
const isIdentStart = (c: string) => (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_' || c >= '\u0080';
/** scan.l's ident_cont: an identifier goes on through digits and `$`. */
const isIdentCont = (c: string) => isIdentStart(c) || isDigit(c) || c === '$';
const isTagCont = (c: string) => isIdentStart(c) || isDigit(c);

export function scanSql(sql: string, options: ScanOptions = {}): SqlScan {
  const scs = options.standardConformingStrings ?? true;
  const placeholders: Placeholder[] = [];
  const named: NamedPlaceholder[] = [];
  const semicolons: number[] = [];
  let end = 0;
  let problem: string | null = null;
  const n = sql.length;
  let i = 0;

  /** Past a quoted run opened at `from` (the opening quote); doubled quotes stay inside. */
  const quoted = (from: number, quote: string, backslashes: boolean): number => {
    let j = from + 1;
    while (j < n) {
      const c = sql[j]!;
      if (backslashes && c === '\\') j += 2;
      else if (c === quote && sql[j + 1] === quote) j += 2;
      else if (c === quote) return j + 1;
      else j++;
    }
    problem ??= `unterminated ${quote === '"' ? 'quoted identifier' : 'string'} at offset ${from}`;
    return n;
  };

  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (c === '-' && next === '-') {
      while (i < n && sql[i] !== '\n' && sql[i] !== '\r') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      const from = i;
      let depth = 0;
      while (i < n) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
          if (depth === 0) break;
        } else {
          i++;
        }
      }
      if (depth > 0) problem ??= `unterminated comment at offset ${from}`;
      continue;
    }
    if (c === ';') {
      semicolons.push(i);
      i++;
      continue;
    }
    if (c === "'") {
      i = quoted(i, "'", !scs);
    } else if (c === '"') {
      i = quoted(i, '"', false);
    } else if (c === '$' && next !== undefined && isDigit(next)) {
      let j = i + 1;
      while (j < n && isDigit(sql[j]!)) j++;
      // PostgreSQL 15 rejects this as trailing junk; older servers read `$1` and then a name.
      if (j < n && isIdentCont(sql[j]!)) problem ??= `"${sql.slice(i, j + 1)}" at offset ${i}: a placeholder runs into a name`;
      placeholders.push({ index: Number(sql.slice(i + 1, j)), start: i, end: j });
      i = j;
    } else if (c === '$') {
      let j = i + 1;
      if (j < n && isIdentStart(sql[j]!)) {
        j++;
        while (j < n && isTagCont(sql[j]!)) j++;
      }
      if (sql[j] === '$') {
        const tag = sql.slice(i, j + 1);
        const close = sql.indexOf(tag, j + 1);
        if (close < 0) {
          problem ??= `unterminated dollar-quoted string at offset ${i}`;
          i = n;
        } else {
          i = close + tag.length;
        }
      } else {
        // A lone `$`: not a token the server accepts here; it will say so.
        i++;
      }
    } else if (c === ':' && next === ':') {
      // A cast: `x::text`.
      i += 2;
    } else if (c === ':' && next !== undefined && isIdentStart(next)) {
      let j = i + 2;
      while (j < n && isTagCont(sql[j]!)) j++;
      named.push({ name: sql.slice(i + 1, j), start: i, end: j });
      i = j;
    } else if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentCont(sql[j]!)) j++;
      const word = sql.slice(i, j);
      const after = sql[j];
      if (after === "'" && word.length === 1 && 'eEbBxXnN'.includes(word)) {
        // E'…' takes backslash escapes; B'…', X'…' and N'…' quote like '…'.
        i = quoted(j, "'", word === 'e' || word === 'E' || !scs);
      } else if ((word === 'u' || word === 'U') && after === '&' && (sql[j + 1] === "'" || sql[j + 1] === '"')) {
        // U&'…' takes \XXXX escapes, but a quote inside is still written twice.
        i = quoted(j + 1, sql[j + 1]!, false);
      } else {
        i = j;
      }
    } else {
      // Digits, operators, punctuation: nothing in them can hide or be a placeholder.
      i++;
    }
    end = i;
  }
  return { placeholders, named, semicolons, end, problem };
}

/**
 * A statement written with `:name` placeholders as PostgreSQL takes it: `$1`, `$2`... in order of each
 * name's first use (a name used twice is one parameter), and the names in that order. A statement that
 * has `$n` placeholders is left alone (a `:x` in it is something else, an array slice say).
 */
export function numberNamedPlaceholders(sql: string): { sql: string; names: string[] } | null {
  const scan = scanSql(sql);
  if (scan.named.length === 0 || scan.placeholders.length > 0) return null;
  const names: string[] = [];
  let out = '';
  let at = 0;
  for (const p of scan.named) {
    let index = names.indexOf(p.name);
    if (index < 0) index = names.push(p.name) - 1;
    out += `${sql.slice(at, p.start)}$${index + 1}`;
    at = p.end;
  }
  return { sql: out + sql.slice(at), names };
}
