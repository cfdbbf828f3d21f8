import type { Row } from './change.js';

/**
 * A key template such as `user:email:{email}`, parsed once at start. `{column}` is replaced by the
 * column's text value; `{{` and `}}` stand for literal braces.
 */
export interface Template {
  readonly source: string;
  /** Literal text and column references, in order. */
  readonly parts: readonly TemplatePart[];
  /** Distinct column names referenced, in order of first use. */
  readonly columns: readonly string[];
}

export type TemplatePart = { kind: 'text'; text: string } | { kind: 'column'; name: string };

export class TemplateSyntaxError extends Error {
  constructor(
    message: string,
    readonly offset: number,
  ) {
    super(message);
    this.name = 'TemplateSyntaxError';
  }
}

export function parseTemplate(source: string): Template {
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
      parts.push({ kind: 'column', name });
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
  return { source, parts, columns };
}

/**
 * Result of rendering a template against one row: the key; `null` when a referenced value is SQL
 * NULL (no cache entry can be addressed by it); or the name of a column whose value is unknown.
 */
export type Rendered = { kind: 'key'; key: string } | { kind: 'null' } | { kind: 'unknown'; column: string };

const NULL_RESULT: Rendered = { kind: 'null' };

export function renderTemplate(template: Template, row: Row): Rendered {
  let key = '';
  for (const part of template.parts) {
    if (part.kind === 'text') {
      key += part.text;
      continue;
    }
    // Rows may come from JSON (explain, Kafka): never read a value off Object.prototype.
    const value = Object.hasOwn(row, part.name) ? row[part.name] : undefined;
    if (value === undefined) return { kind: 'unknown', column: part.name };
    if (value === null) return NULL_RESULT;
    key += value;
  }
  return { kind: 'key', key };
}
