import { describe, expect, it } from 'vitest';
import type { Row } from '../../src/core/change.js';
import { parseTemplate, renderTemplate, renderWithLookups, TemplateSyntaxError, type LookupRowsFor, type TemplatePart } from '../../src/core/template.js';

describe('parseTemplate', () => {
  const valid: Array<{ source: string; parts: TemplatePart[]; columns: string[] }> = [
    { source: 'users:version', parts: [{ kind: 'text', text: 'users:version' }], columns: [] },
    { source: '{id}', parts: [{ kind: 'column', name: 'id' }], columns: ['id'] },
    {
      source: 'user:{id}',
      parts: [
        { kind: 'text', text: 'user:' },
        { kind: 'column', name: 'id' },
      ],
      columns: ['id'],
    },
    {
      source: 'comments:name={name}:email={email}',
      parts: [
        { kind: 'text', text: 'comments:name=' },
        { kind: 'column', name: 'name' },
        { kind: 'text', text: ':email=' },
        { kind: 'column', name: 'email' },
      ],
      columns: ['name', 'email'],
    },
    {
      // Adjacent placeholders with no text between them.
      source: '{a}{b}',
      parts: [
        { kind: 'column', name: 'a' },
        { kind: 'column', name: 'b' },
      ],
      columns: ['a', 'b'],
    },
    { source: '{{id}}', parts: [{ kind: 'text', text: '{id}' }], columns: [] },
    { source: 'a{{b', parts: [{ kind: 'text', text: 'a{b' }], columns: [] },
    { source: 'a}}b', parts: [{ kind: 'text', text: 'a}b' }], columns: [] },
    {
      source: 'json:{{"id":{id}}}',
      parts: [
        { kind: 'text', text: 'json:{"id":' },
        { kind: 'column', name: 'id' },
        { kind: 'text', text: '}' },
      ],
      columns: ['id'],
    },
    {
      source: '{{{id}}}',
      parts: [
        { kind: 'text', text: '{' },
        { kind: 'column', name: 'id' },
        { kind: 'text', text: '}' },
      ],
      columns: ['id'],
    },
    {
      // Columns are listed once each, in order of first use.
      source: '{b}:{a}:{b}:{a}',
      parts: [
        { kind: 'column', name: 'b' },
        { kind: 'text', text: ':' },
        { kind: 'column', name: 'a' },
        { kind: 'text', text: ':' },
        { kind: 'column', name: 'b' },
        { kind: 'text', text: ':' },
        { kind: 'column', name: 'a' },
      ],
      columns: ['b', 'a'],
    },
  ];

  it('parses a lookup reference when the lookup is declared', () => {
    const t = parseTemplate('x:{author.name}:{id}', new Set(['author']));
    expect(t.parts).toEqual([
      { kind: 'text', text: 'x:' },
      { kind: 'lookup', alias: 'author', column: 'name' },
      { kind: 'text', text: ':' },
      { kind: 'column', name: 'id' },
    ]);
    expect(t.columns).toEqual(['id']);
    expect(t.lookups).toEqual(['author']);
  });

  it('rejects a dotted reference to an undeclared lookup', () => {
    expect(() => parseTemplate('x:{author.name}')).toThrow(/names no lookup "author" \(the rule declares no lookup\)/);
    expect(() => parseTemplate('x:{autor.name}', new Set(['author']))).toThrow(/names no lookup "autor" \(declared: author\)/);
    expect(() => parseTemplate('x:{author.}', new Set(['author']))).toThrow(/names no column of lookup "author"/);
  });

  it.each(valid)('parses $source', ({ source, parts, columns }) => {
    const t = parseTemplate(source);
    expect(t.source).toBe(source);
    expect(t.parts).toEqual(parts);
    expect(t.columns).toEqual(columns);
  });

  const invalid: Array<{ source: string; message: RegExp; offset: number }> = [
    { source: '', message: /empty key template/, offset: 0 },
    { source: 'user:{id', message: /unclosed "\{" at character 6/, offset: 5 },
    { source: '{id', message: /unclosed "\{"/, offset: 0 },
    { source: 'id}', message: /unmatched "\}" at character 3/, offset: 2 },
    { source: 'user:{id}}', message: /unmatched "\}"/, offset: 9 },
    { source: '{}', message: /empty placeholder/, offset: 0 },
    { source: 'x:{ }', message: /empty placeholder/, offset: 2 },
    { source: '{ id }', message: /spaces around the column name/, offset: 0 },
    { source: '{id }', message: /spaces around the column name/, offset: 0 },
    { source: '{a{b}}', message: /unclosed "\{"/, offset: 0 },
    { source: '{a{{b}', message: /unclosed "\{"/, offset: 0 },
  ];

  it.each(invalid)('rejects "$source"', ({ source, message, offset }) => {
    let caught: unknown;
    try {
      parseTemplate(source);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(TemplateSyntaxError);
    const err = caught as TemplateSyntaxError;
    expect(err.message).toMatch(message);
    expect(err.offset).toBe(offset);
    expect(err.name).toBe('TemplateSyntaxError');
  });
});

describe('renderTemplate', () => {
  const cases: Array<{ name: string; template: string; row: Row; expected: ReturnType<typeof renderTemplate> }> = [
    { name: 'fixed text', template: 'users:version', row: {}, expected: { kind: 'key', key: 'users:version' } },
    { name: 'one column', template: 'user:{id}', row: { id: '42' }, expected: { kind: 'key', key: 'user:42' } },
    {
      name: 'text values as they are, spaces, colons and case kept',
      template: 'u:{name}:{email}',
      row: { name: 'Ada Lovelace', email: 'A@Example.COM:x' },
      expected: { kind: 'key', key: 'u:Ada Lovelace:A@Example.COM:x' },
    },
    { name: 'empty string is a value', template: 'u:{name}', row: { name: '' }, expected: { kind: 'key', key: 'u:' } },
    {
      name: 'a value that looks like a placeholder is not expanded',
      template: 'u:{name}',
      row: { name: '{id}', id: '1' },
      expected: { kind: 'key', key: 'u:{id}' },
    },
    { name: 'literal braces', template: '{{{id}}}', row: { id: '7' }, expected: { kind: 'key', key: '{7}' } },
    { name: 'SQL NULL', template: 'user:email:{email}', row: { email: null }, expected: { kind: 'null' } },
    { name: 'absent column', template: 'user:email:{email}', row: { id: '1' }, expected: { kind: 'unknown', column: 'email' } },
    {
      name: 'column present with value undefined (unchanged TOAST)',
      template: 'doc:{body}',
      row: { body: undefined },
      expected: { kind: 'unknown', column: 'body' },
    },
    {
      name: 'the first unknown column is named',
      template: '{a}:{b}:{c}',
      row: { a: '1' },
      expected: { kind: 'unknown', column: 'b' },
    },
    { name: 'constructor is not read off Object.prototype', template: 'x:{constructor}', row: {}, expected: { kind: 'unknown', column: 'constructor' } },
    { name: '__proto__ is not read off Object.prototype', template: 'x:{__proto__}', row: {}, expected: { kind: 'unknown', column: '__proto__' } },
    { name: 'toString is not read off Object.prototype', template: 'x:{toString}', row: {}, expected: { kind: 'unknown', column: 'toString' } },
    {
      name: 'a real column named constructor renders',
      template: 'x:{constructor}',
      row: JSON.parse('{"constructor":"c1"}') as Row,
      expected: { kind: 'key', key: 'x:c1' },
    },
    {
      name: 'a real column named __proto__ (from JSON) renders',
      template: 'x:{__proto__}',
      row: JSON.parse('{"__proto__":"p1"}') as Row,
      expected: { kind: 'key', key: 'x:p1' },
    },
  ];

  it.each(cases)('$name', ({ template, row, expected }) => {
    expect(renderTemplate(parseTemplate(template), row)).toEqual(expected);
  });

  it('renders against null-prototype rows (as the decoder builds them)', () => {
    const row = Object.create(null) as Record<string, string | null>;
    row['id'] = '5';
    expect(renderTemplate(parseTemplate('user:{id}'), row)).toEqual({ kind: 'key', key: 'user:5' });
    expect(renderTemplate(parseTemplate('user:{name}'), row)).toEqual({ kind: 'unknown', column: 'name' });
  });

  it('a NULL value means no key, even when a later value is unknown', () => {
    // No cache entry can be addressed by a NULL, so there is nothing to fall back for.
    expect(renderTemplate(parseTemplate('{a}:{b}'), { a: null })).toEqual({ kind: 'null' });
  });
});

describe('renderWithLookups', () => {
  const ALIASES = new Set(['a', 'b']);
  const results: Record<string, LookupRowsFor> = {
    a: { kind: 'rows', rows: [{ x: '1' }, { x: null }, { x: '3' }] },
    b: { kind: 'rows', rows: [{ y: 'p' }, { y: 'q' }] },
    none: { kind: 'rows', rows: [] },
    broken: { kind: 'failed', message: 'boom' },
  };
  const render = (source: string, row: Row, answers: Record<string, string> = {}) =>
    renderWithLookups(parseTemplate(source, ALIASES), row, (alias) => results[answers[alias] ?? alias]!);

  it.each<[string, string, Row, Record<string, string>, unknown]>([
    ['one lookup: a key per row, none for a NULL', 'k:{id}:{a.x}', { id: '7' }, {}, { kind: 'keys', keys: ['k:7:1', 'k:7:3'] }],
    ['two lookups: a key per combination', '{a.x}-{b.y}', {}, {}, { kind: 'keys', keys: ['1-p', '1-q', '3-p', '3-q'] }],
    ['zero rows: no key, and no column is read', '{missing}:{a.x}', {}, { a: 'none' }, { kind: 'keys', keys: [] }],
    ['an unknown row column', 'k:{missing}:{a.x}', {}, {}, { kind: 'unknown', column: 'missing' }],
    ['a result without the column', 'k:{a.z}', {}, {}, { kind: 'failed', alias: 'a', message: 'lookup "a" returned no column "z"' }],
    ['the second of two lookups failed', '{a.x}-{b.y}', {}, { b: 'broken' }, { kind: 'failed', alias: 'b', message: 'boom' }],
    ['a failed lookup', 'k:{a.x}', {}, { a: 'broken' }, { kind: 'failed', alias: 'a', message: 'boom' }],
  ])('%s', (_, source, row, answers, expected) => {
    expect(render(source, row, answers)).toEqual(expected);
  });
});
