import { describe, expect, it } from 'vitest';
import { arrayLiteral, batchedLookupSql, splitBatchedRows, textRows, type ParameterType } from '../../src/lookups/batched-sql.js';

const INT: ParameterType = { arrayType: 'pg_catalog._int4', delimiter: ',' };
const TEXT: ParameterType = { arrayType: 'pg_catalog._text', delimiter: ',' };
const ON = { standardConformingStrings: true };

/** The rewritten user SQL alone: what sits between the LATERAL's parentheses. */
function body(sql: string, types = [INT], options = ON): string {
  const built = batchedLookupSql(sql, types, options);
  if ('problem' in built) throw new Error(built.problem);
  const m = /FROM \(\n([\s\S]*)\n\) AS "cdc-invalidator lookup"/.exec(built.sql);
  return m![1]!;
}

const P = (n: number) => `("cdc-invalidator params".p${n})`;

describe('batchedLookupSql', () => {
  it('wraps the query in a LATERAL over the unnested arrays, ordered by list then row', () => {
    const built = batchedLookupSql('SELECT name FROM users WHERE id = $1 AND org = $2', [INT, TEXT], ON);
    expect(built).toEqual({
      sql: [
        'SELECT "cdc-invalidator params"."cdc-invalidator set", "cdc-invalidator rows".*',
        'FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog._int4), pg_catalog.unnest($2::pg_catalog._text)) WITH ORDINALITY AS "cdc-invalidator params" (p1, p2, "cdc-invalidator set")',
        'CROSS JOIN LATERAL (SELECT "cdc-invalidator lookup".*, pg_catalog.row_number() OVER () AS "cdc-invalidator row" FROM (',
        `SELECT name FROM users WHERE id = ${P(1)} AND org = ${P(2)}`,
        ') AS "cdc-invalidator lookup") AS "cdc-invalidator rows"',
        'ORDER BY 1, "cdc-invalidator rows"."cdc-invalidator row"',
      ].join('\n'),
    });
  });

  const TEN = Array.from({ length: 10 }, () => INT);
  it.each<[string, string, ParameterType[], string]>([
    ['a parameter used twice', 'SELECT 1 WHERE $1 = a OR $1 = b', [INT], `SELECT 1 WHERE ${P(1)} = a OR ${P(1)} = b`],
    ['$10 and $1', 'SELECT $10, $1', TEN, `SELECT ${P(10)}, ${P(1)}`],
    ['a literal and a comment holding $1', "SELECT '$1', $1 /* $1 */ FROM t -- $1\n", [INT], `SELECT '$1', ${P(1)} /* $1 */ FROM t`],
    ['a dollar-quoted string and an E string', "SELECT $q$ $1 $q$, E'\\' $1', $1", [INT], `SELECT $q$ $1 $q$, E'\\' $1', ${P(1)}`],
    ['casts, subscripts and fields', 'SELECT $1::text, $1[1], ($1).f', [INT], `SELECT ${P(1)}::text, ${P(1)}[1], (${P(1)}).f`],
    ['a trailing semicolon and comment', 'SELECT $1; -- end', [INT], `SELECT ${P(1)}`],
  ])('%s', (_, sql, types, expected) => {
    expect(body(sql, types)).toBe(expected);
  });

  it('keeps a line comment inside the query from swallowing the closing parenthesis', () => {
    // The scan ends the statement before the comment; were it kept, the newline would end it.
    expect(body('SELECT $1 -- the id')).toBe(`SELECT ${P(1)}`);
    expect(body('SELECT $1 -- one\nFROM t')).toBe(`SELECT ${P(1)} -- one\nFROM t`);
  });

  it.each([
    ["SELECT 'open", [INT], /unterminated string/],
    ['SELECT $1 ; SELECT 2', [INT], /more than one statement/],
    ['SELECT 1', [], /no parameter/],
    ['SELECT $2', [INT], /has 1 parameter\(s\) but the text names \$2/],
    ['SELECT $0', [INT], /names \$0/],
  ] as const)('cannot rewrite %j', (sql, types, message) => {
    const built = batchedLookupSql(sql, types, ON);
    expect('problem' in built && built.problem).toMatch(message);
  });
});

describe('arrayLiteral', () => {
  it.each<[(string | null)[], string, string]>([
    [['1', '22'], ',', '{"1","22"}'],
    [[null, 'NULL', ''], ',', '{NULL,"NULL",""}'],
    [['a"b', 'c\\d', '{x,y}', ' pad '], ',', '{"a\\"b","c\\\\d","{x,y}"," pad "}'],
    [['(1,1),(0,0)', '(2,2),(1,1)'], ';', '{"(1,1),(0,0)";"(2,2),(1,1)"}'],
    [[], ',', '{}'],
  ])('%j', (values, delimiter, literal) => {
    expect(arrayLiteral(values, delimiter)).toBe(literal);
  });
});

describe('rows back', () => {
  const field = (name: string, dataTypeID = 25) => ({ name, dataTypeID });

  it('textRows: by name, the later of two equal names wins, booleans as true/false', () => {
    const fields = [field('id', 23), field('ok', 16), field('name'), field('name')];
    expect(textRows(fields, [['1', 't', 'a', 'b'], ['2', 'f', null, 'c'], ['3', null, 'x', null]])).toEqual([
      { id: '1', ok: 'true', name: 'b' },
      { id: '2', ok: 'false', name: 'c' },
      { id: '3', ok: null, name: null },
    ]);
  });

  it('splitBatchedRows: rows to their list, in order; lists with no row get none', () => {
    const fields = [field('cdc-invalidator set', 20), field('name'), field('flag', 16), field('cdc-invalidator row', 20)];
    const rows = [
      ['1', 'a', 't', '1'],
      ['3', 'c1', 'f', '1'],
      ['3', 'c2', null, '2'],
    ];
    expect(splitBatchedRows(fields, rows, 4)).toEqual([[{ name: 'a', flag: 'true' }], [], [{ name: 'c1', flag: 'false' }, { name: 'c2', flag: null }], []]);
  });

  it('splitBatchedRows: the query may name its columns like the helper columns', () => {
    const fields = [field('x', 20), field('x'), field('y'), field('y', 20)];
    expect(splitBatchedRows(fields, [['1', 'a', 'b', '1']], 1)).toEqual([[{ x: 'a', y: 'b' }]]);
  });

  it('splitBatchedRows: a row for no list is an error, not a guess', () => {
    const fields = [field('s', 20), field('name'), field('r', 20)];
    expect(() => splitBatchedRows(fields, [['2', 'a', '1']], 1)).toThrow(/row for list 2 of 1/);
  });
});
