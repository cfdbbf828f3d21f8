import { describe, expect, it } from 'vitest';
import { numberNamedPlaceholders, scanSql } from '../../src/lib/sql-lexer.js';

/** The placeholders the scan finds, as `$n@offset`. */
const found = (sql: string, standardConformingStrings = true) =>
  scanSql(sql, { standardConformingStrings }).placeholders.map((p) => `${sql.slice(p.start, p.end)}@${p.start}`);

describe('scanSql: placeholders', () => {
  it.each<[string, string, string[]]>([
    ['plain', 'SELECT a FROM t WHERE id = $1', ['$1@27']],
    ['several, used twice', 'SELECT $2, $1 WHERE $1 = x', ['$2@7', '$1@11', '$1@20']],
    ['$10 is not $1 then 0', 'SELECT $10, $1', ['$10@7', '$1@12']],
    ['next to operators and casts', 'SELECT($1)+$2::int,-$3,x[$4]', ['$1@7', '$2@11', '$3@20', '$4@25']],
    ['a string', "SELECT '$1', $2", ['$2@13']],
    ['a string with a doubled quote', "SELECT 'it''s $1', $2", ['$2@19']],
    ['a backslash in a standard string escapes nothing', "SELECT 'a\\', $1", ['$1@13']],
    ['an E string with an escaped quote', "SELECT E'it\\'s $1', $2", ['$2@20']],
    ['a lower-case e string', "SELECT e'\\\\', $1", ['$1@14']],
    ['an E string with a doubled quote', "SELECT E'x''$1', $2", ['$2@17']],
    ['a name ending in e is not an E string', "SELECT nie'\\', $1", ['$1@15']],
    ['B, X and N strings', "SELECT B'1', X'$1', N'$1', $2", ['$2@27']],
    ['a U& string', "SELECT U&'d\\0061t$1', $2", ['$2@22']],
    ['a U& identifier', 'SELECT U&"$1", $2', ['$2@15']],
    ['a quoted identifier', 'SELECT "$1" FROM "a""$2" WHERE x = $1', ['$1@35']],
    ['a line comment', 'SELECT 1 -- $1\nWHERE x = $2', ['$2@25']],
    ['a line comment ended by CR', 'SELECT 1 -- $1\rWHERE x = $2', ['$2@25']],
    ['a block comment', 'SELECT /* $1 */ $2', ['$2@16']],
    ['nested block comments', 'SELECT /* a /* $1 */ $2 */ $3', ['$3@27']],
    ['a comment right after an operator', 'SELECT 2*/*$1*/$2', ['$2@15']],
    ['a dollar-quoted string', 'SELECT $$ $1 $$, $2', ['$2@17']],
    ['a tagged dollar-quoted string with $$ inside', 'SELECT $f$ $$ $1 $$ $f$, $2', ['$2@25']],
    ['another tag inside does not close it', 'SELECT $a$ $b$ $1 $a$, $2', ['$2@23']],
    ['a name may hold $', 'SELECT a$1, x$$1, $1', ['$1@18']],
    ['a keyword run into a dollar quote is a name', 'SELECT$$1', []],
    ['a lone $ is passed over', 'SELECT $ $1', ['$1@9']],
    ['non-ASCII names', 'SELECT é$1, $1', ['$1@12']],
  ])('%s', (_, sql, expected) => {
    expect(found(sql)).toEqual(expected);
    expect(scanSql(sql).problem).toBeNull();
  });

  it('standard_conforming_strings off: a backslash escapes a quote in a plain string', () => {
    const sql = "SELECT 'a\\' $1 ', $2";
    expect(found(sql, false)).toEqual(['$2@18']);
    expect(scanSql(sql, { standardConformingStrings: false }).problem).toBeNull();
    // Read with the wrong setting, the text does not scan: it is not rewritten.
    expect(scanSql(sql, { standardConformingStrings: true }).problem).toMatch(/unterminated string/);
  });
});

describe('scanSql: statement end and semicolons', () => {
  it.each<[string, string, number[]]>([
    ['SELECT 1', 'SELECT 1', []],
    ['SELECT 1;', 'SELECT 1', [8]],
    ['SELECT 1 ; -- done\n /* really */ ', 'SELECT 1', [9]],
    ["SELECT ';' -- ;", "SELECT ';'", []],
    ['SELECT 1; SELECT 2', 'SELECT 1; SELECT 2', [8]],
    ['SELECT 1 -- trailing', 'SELECT 1', []],
  ])('%j', (sql, statement, semicolons) => {
    const scan = scanSql(sql);
    expect(sql.slice(0, scan.end)).toBe(statement);
    expect(scan.semicolons).toEqual(semicolons);
  });
});

describe('scanSql: problems', () => {
  it.each([
    ["SELECT 'abc", /unterminated string at offset 7/],
    ["SELECT E'abc\\'", /unterminated string/],
    ['SELECT "abc', /unterminated quoted identifier/],
    ['SELECT /* /* */', /unterminated comment/],
    ['SELECT $x$ abc $y$', /unterminated dollar-quoted string/],
    ['SELECT $1abc', /"\$1a" at offset 7: a placeholder runs into a name/],
    ['SELECT $1_', /runs into a name/],
  ])('%j', (sql, message) => {
    expect(scanSql(sql).problem).toMatch(message);
  });
});

describe(':name placeholders', () => {
  it('are numbered in order of first use; casts, literals, comments and $n statements are left alone', () => {
    expect(numberNamedPlaceholders("SELECT a::text, ':x', \"b:y\" /* :z */ FROM t WHERE n = :name AND e = :email OR n2 = :name -- :w")).toEqual({
      sql: "SELECT a::text, ':x', \"b:y\" /* :z */ FROM t WHERE n = $1 AND e = $2 OR n2 = $1 -- :w",
      names: ['name', 'email'],
    });
    expect(numberNamedPlaceholders('SELECT arr[1:n] FROM t WHERE id = $1')).toBeNull();
    expect(numberNamedPlaceholders('SELECT 1 FROM t WHERE f(a := 1)')).toBeNull();
    expect(numberNamedPlaceholders('SELECT id FROM t')).toBeNull();
  });
});
