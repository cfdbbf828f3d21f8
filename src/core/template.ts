import type { Row } from './change.js';

/**
 * A key template such as `user:email:{email}`, parsed once at start. `{column}` is replaced by the
 * column's text value; `{{` and `}}` stand for literal braces.
 */
export interface Template {
  readonly source: string;
  /** Literal text, column references and lookup references, in order. */
  readonly parts: readonly TemplatePart[];
  /** Distinct column names of the changed row referenced, in order of first use. */
  readonly columns: readonly string[];
  /** Distinct lookup names referenced (`{alias.column}`), in order of first use. */
  readonly lookups: readonly string[];
}

export type TemplatePart =
  | { kind: 'text'; text: string }
  | { kind: 'column'; name: string }
  | { kind: 'lookup'; alias: string; column: string };

export class TemplateSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'TemplateSyntaxError';
  }
}

/**
 * @param lookups the names of the rule's lookups: `{name.column}` refers to a column of a lookup's
 * result when `name` is one of them. Any other dotted reference is an error (a typo in a lookup
 * name must not silently become a column that never exists).
 */
export function parseTemplate(source: string, lookups: ReadonlySet<string> = new Set()): Template {
  const parts: TemplatePart[] = [];
  let text = '';
  let i = 0;
  while (i < source.length) {
    const ch = source[i]!;
    if (ch === '{') {
      if (source[i + 1] === '{') {
        text += '{';
        i += 2;
        continue;
      }
      const end = source.indexOf('}', i + 1);
      const nextOpen = source.indexOf('{', i + 1);
      if (end < 0 || (nextOpen >= 0 && nextOpen < end)) {
        throw new TemplateSyntaxError(
          `unclosed "{" at character ${i + 1} of "${source}" (write "{{" for a literal brace)`,
          i,
        );
      }
      const name = source.slice(i + 1, end);
      if (name.trim() === '') {
        throw new TemplateSyntaxError(`empty placeholder "{}" at character ${i + 1} of "${source}"`, i);
      }
      if (name !== name.trim()) {
        throw new TemplateSyntaxError(
          `placeholder "{${name}}" has spaces around the column name in "${source}"`,
          i,
        );
      }
      if (text !== '') parts.push({ kind: 'text', text });
      text = '';
      parts.push(placeholder(name, source, i, lookups));
      i = end + 1;
      continue;
    }
    if (ch === '}') {
      if (source[i + 1] === '}') {
        text += '}';
        i += 2;
        continue;
      }
      throw new TemplateSyntaxError(
        `unmatched "}" at character ${i + 1} of "${source}" (write "}}" for a literal brace)`,
        i,
      );
    }
    text += ch;
    i += 1;
  }
  if (text !== '') parts.push({ kind: 'text', text });
  if (parts.length === 0) throw new TemplateSyntaxError('empty key template', 0);
  const columns = [...new Set(parts.flatMap((p) => (p.kind === 'column' ? [p.name] : [])))];
  const lookupNames = [...new Set(parts.flatMap((p) => (p.kind === 'lookup' ? [p.alias] : [])))];
  return { source, parts, columns, lookups: lookupNames };
}

function placeholder(name: string, source: string, offset: number, lookups: ReadonlySet<string>): TemplatePart {
  const dot = name.indexOf('.');
  if (dot < 0) return { kind: 'column', name };
  const alias = name.slice(0, dot);
  const column = name.slice(dot + 1);
  if (!lookups.has(alias)) {
    const declared = lookups.size === 0 ? 'the rule declares no lookup' : `declared: ${[...lookups].join(', ')}`;
    throw new TemplateSyntaxError(`"{${name}}" in "${source}" names no lookup "${alias}" (${declared})`, offset);
  }
  if (column === '') throw new TemplateSyntaxError(`"{${name}}" in "${source}" names no column of lookup "${alias}"`, offset);
  return { kind: 'lookup', alias, column };
}

/**
 * Result of rendering a template against one row: the key; `null` when a referenced value is SQL
 * NULL (no cache entry can be addressed by it); or the name of a column whose value is unknown.
 */
export type Rendered = { kind: 'key'; key: string } | { kind: 'null' } | { kind: 'unknown'; column: string };

const NULL_RESULT: Rendered = { kind: 'null' };

/**
 * Renders a template without lookup references against a row. `escape` is applied to every value
 * (patterns escape glob characters, so that a value can never widen what a pattern matches).
 */
export function renderTemplate(template: Template, row: Row, escape?: (value: string) => string): Rendered {
  let key = '';
  for (const part of template.parts) {
    if (part.kind === 'text') {
      key += part.text;
      continue;
    }
    if (part.kind === 'lookup') throw new Error(`template "${template.source}" needs lookup results`);
    // Rows may come from JSON (explain, Kafka): never read a value off Object.prototype.
    const value = Object.hasOwn(row, part.name) ? row[part.name] : undefined;
    if (value === undefined) return { kind: 'unknown', column: part.name };
    if (value === null) return NULL_RESULT;
    key += escape === undefined ? value : escape(value);
  }
  return { kind: 'key', key };
}

/** Result rows of one lookup for one changed row, or why there are none to render with. */
export type LookupRowsFor = { kind: 'rows'; rows: readonly Row[] } | { kind: 'failed'; message: string } | { kind: 'unknown'; column: string };

export type RenderedMany =
  | { kind: 'keys'; keys: string[] }
  | { kind: 'unknown'; column: string }
  | { kind: 'failed'; alias: string; message: string };

/**
 * Renders a template that may reference lookups: one key for each combination of the lookups'
 * result rows (zero rows render nothing). A result column that is SQL NULL renders no key for
 * that row, as a NULL column of the changed row does.
 */
export function renderWithLookups(
  template: Template,
  row: Row,
  lookup: (alias: string) => LookupRowsFor,
  escape?: (value: string) => string,
): RenderedMany {
  if (template.lookups.length === 0) {
    const r = renderTemplate(template, row, escape);
    if (r.kind === 'unknown') return r;
    return { kind: 'keys', keys: r.kind === 'key' ? [r.key] : [] };
  }
  const keys: string[] = [];
  if (template.lookups.length === 1) {
    // The common case, one lookup: its rows in turn, without the maps of the general case.
    const alias = template.lookups[0]!;
    const result = lookup(alias);
    if (result.kind === 'unknown') return result;
    if (result.kind === 'failed') return { kind: 'failed', alias, message: result.message };
    let current: Row = result.rows[0]!;
    const chosen = () => current;
    for (current of result.rows) {
      const stop = renderCombination(template, row, chosen, keys, escape);
      if (stop !== null) return stop;
    }
    return { kind: 'keys', keys };
  }
  const rowsByAlias = new Map<string, readonly Row[]>();
  for (const alias of template.lookups) {
    const result = lookup(alias);
    if (result.kind === 'unknown') return result;
    if (result.kind === 'failed') return { kind: 'failed', alias, message: result.message };
    rowsByAlias.set(alias, result.rows);
  }
  const chosen = new Map<string, Row>();
  const chosenRow = (alias: string) => chosen.get(alias)!;
  // Expand alias by alias: each lookup's rows multiply the keys rendered so far.
  const expand = (aliasIndex: number): RenderedMany | null => {
    if (aliasIndex === template.lookups.length) return renderCombination(template, row, chosenRow, keys, escape);
    const alias = template.lookups[aliasIndex]!;
    for (const r of rowsByAlias.get(alias)!) {
      chosen.set(alias, r);
      const stop = expand(aliasIndex + 1);
      if (stop !== null) return stop;
    }
    return null;
  };
  const stop = expand(0);
  return stop ?? { kind: 'keys', keys };
}

/**
 * Renders the key of one combination of result rows (`chosen` gives each lookup's) into `keys`,
 * none when a value is NULL. Returns why rendering stops, or null to go on.
 */
function renderCombination(
  template: Template,
  row: Row,
  chosen: (alias: string) => Row,
  keys: string[],
  escape: ((value: string) => string) | undefined,
): RenderedMany | null {
  let key = '';
  for (const part of template.parts) {
    let value: string | null | undefined;
    if (part.kind === 'text') {
      key += part.text;
      continue;
    } else if (part.kind === 'column') {
      value = Object.hasOwn(row, part.name) ? row[part.name] : undefined;
      if (value === undefined) return { kind: 'unknown', column: part.name };
    } else {
      const r = chosen(part.alias);
      value = Object.hasOwn(r, part.column) ? r[part.column] : undefined;
      if (value === undefined) {
        return { kind: 'failed', alias: part.alias, message: `lookup "${part.alias}" returned no column "${part.column}"` };
      }
    }
    if (value === null) return null;
    key += escape === undefined ? value : escape(value);
  }
  keys.push(key);
  return null;
}
