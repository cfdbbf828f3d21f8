import { describe, expect, it } from 'vitest';
import type { Change, Row } from '../../src/core/change.js';
import { emptyEvaluation, evaluate, lookupsFor } from '../../src/core/evaluate.js';
import { lookupRequestId, type LookupRequest, type LookupResult } from '../../src/core/lookup.js';
import { compileRules, type RuleSpec } from '../../src/core/rules.js';

const AUTHOR = { sql: 'SELECT name, email FROM users WHERE id = $1', params: ['user_id'], timeoutMs: 1000, retries: 0 };

function compile(rule: Omit<RuleSpec, 'table'>) {
  const { rules, problems } = compileRules([{ file: 'm.yaml', rules: [{ table: 'comments', ...rule }] }]);
  return { rules, problems };
}

function change(op: Change['op'], before: Row | null, after: Row | null): Change {
  return { schema: 'public', table: 'comments', op, before, after, keyColumns: ['id'], version: 7n, position: '0/7' };
}

/** Plans the change's lookups, answers them from `db` (by first parameter), then evaluates. */
function run(rules: ReturnType<typeof compile>['rules'], c: Change, db: (params: unknown[]) => LookupResult) {
  const requests = new Map<string, LookupRequest>();
  lookupsFor(c, rules, requests);
  const results = new Map([...requests.values()].map((r) => [r.id, db(r.params)] as const));
  return { requests: [...requests.values()], evaluation: evaluate(c, rules, emptyEvaluation(), results) };
}

const users: Record<string, Row[]> = {
  '1': [{ name: 'Ann', email: 'a@x.io' }],
  '2': [{ name: 'Bob', email: 'b@x.io' }],
};

describe('lookups', () => {
  const { rules, problems } = compile({
    lookup: { author: AUTHOR },
    invalidate: ['comment:{id}', 'comments:name={author.name}:email={author.email}'],
  });

  it('compiles without problems', () => {
    expect(problems).toEqual([]);
  });

  it('warns of a lookup no key uses, but not when a template that may use it does not parse', () => {
    const unused = compile({ lookup: { author: AUTHOR }, invalidate: ['comment:{id}'] }).problems;
    expect(unused.map((p) => [p.severity, p.message])).toEqual([['warning', 'lookup "author" is not used by any key']]);
    const typo = compile({ lookup: { author: AUTHOR }, invalidate: ['comment:{id}', 'comments:name={author.name'] }).problems;
    expect(typo.map((p) => p.message)).toHaveLength(1);
    expect(typo[0]!.severity ?? 'error').toBe('error');
    expect(typo[0]!.message).not.toContain('not used');
  });

  it("an insert invalidates its author's key", () => {
    const { requests, evaluation } = run(rules, change('insert', null, { id: '10', user_id: '1' }), (p) => ({ ok: true, rows: users[p[0] as string] ?? [] }));
    expect(requests.map((r) => r.params)).toEqual([['1']]);
    expect(evaluation.operations).toEqual([
      { action: 'delete', key: 'comment:10' },
      { action: 'delete', key: 'comments:name=Ann:email=a@x.io' },
    ]);
  });

  it('a comment moved to another user runs the lookup for both and invalidates both keys', () => {
    const { requests, evaluation } = run(
      rules,
      change('update', { id: '10', user_id: '1' }, { id: '10', user_id: '2' }),
      (p) => ({ ok: true, rows: users[p[0] as string] ?? [] }),
    );
    expect(requests.map((r) => r.params)).toEqual([['1'], ['2']]);
    expect(evaluation.operations.map((o) => ('key' in o ? o.key : ''))).toEqual([
      'comment:10',
      'comments:name=Ann:email=a@x.io',
      'comments:name=Bob:email=b@x.io',
    ]);
  });

  it('identical lookups of different changes in a batch are planned once', () => {
    const requests = new Map<string, LookupRequest>();
    for (const id of ['10', '11', '12']) lookupsFor(change('insert', null, { id, user_id: '1' }), rules, requests);
    lookupsFor(change('insert', null, { id: '13', user_id: '2' }), rules, requests);
    expect([...requests.values()].map((r) => r.params)).toEqual([['1'], ['2']]);
  });

  it('runs the lookup once when old and new parameters are equal', () => {
    const { requests } = run(rules, change('update', { id: '10', user_id: '1' }, { id: '10', user_id: '1' }), () => ({ ok: true, rows: [] }));
    expect(requests).toHaveLength(1);
  });

  it('an update whose old and new rows render the same lookup keys gives each key once', () => {
    const { evaluation } = run(
      rules,
      change('update', { id: '10', user_id: '1', content: 'a' }, { id: '10', user_id: '1', content: 'b' }),
      (p) => ({ ok: true, rows: users[p[0] as string] ?? [] }),
    );
    expect(evaluation.operations).toEqual([
      { action: 'delete', key: 'comment:10' },
      { action: 'delete', key: 'comments:name=Ann:email=a@x.io' },
    ]);
  });

  it('an update whose parameters stay but whose template column changes renders both rows', () => {
    const r = compile({ lookup: { author: AUTHOR }, invalidate: ['x:{content}:{author.name}'] }).rules;
    const { requests, evaluation } = run(
      r,
      change('update', { id: '10', user_id: '1', content: 'a' }, { id: '10', user_id: '1', content: 'b' }),
      (p) => ({ ok: true, rows: users[p[0] as string] ?? [] }),
    );
    expect(requests).toHaveLength(1);
    expect(evaluation.operations).toEqual([
      { action: 'delete', key: 'x:a:Ann' },
      { action: 'delete', key: 'x:b:Ann' },
    ]);
  });

  it('request ids tell every parameter list apart, and identical SQL in two rules shares them', () => {
    const two = compileRules([
      {
        file: 'm.yaml',
        rules: [
          { table: 'comments', lookup: { a: AUTHOR }, invalidate: ['x:{a.name}'] },
          { table: 'comments', lookup: { b: AUTHOR, c: { ...AUTHOR, sql: 'SELECT 1 AS name WHERE $1 = $2', params: ['x', 'y'] } }, invalidate: ['y:{b.name}', 'z:{c.name}'] },
        ],
      },
    ]).rules;
    const [first, second] = two.byTable.get('public.comments')!;
    const a = first!.lookups.get('a')!;
    const b = second!.lookups.get('b')!;
    const c = second!.lookups.get('c')!;
    expect(lookupRequestId(a, ['1'])).toBe(lookupRequestId(b, ['1']));
    const ids = [
      lookupRequestId(a, [null]),
      lookupRequestId(a, ['null']),
      lookupRequestId(a, ['']),
      lookupRequestId(a, ['1']),
      lookupRequestId(c, ['1', '2']),
      lookupRequestId(c, ['1,2', null]),
      lookupRequestId(c, ['1', null]),
      lookupRequestId(c, [null, '1']),
      lookupRequestId(c, ['"1"', '1']),
    ];
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('zero rows render nothing; several rows one key each; a NULL result column renders no key', () => {
    const multi = compile({
      lookup: { f: { sql: 'SELECT follower_id AS id FROM follows WHERE user_id = $1', params: ['user_id'], timeoutMs: 1000, retries: 0 } },
      invalidate: ['feed:{f.id}'],
    }).rules;
    const none = run(multi, change('insert', null, { id: '1', user_id: '9' }), () => ({ ok: true, rows: [] }));
    expect(none.evaluation).toEqual(emptyEvaluation());
    const many = run(multi, change('insert', null, { id: '1', user_id: '9' }), () => ({ ok: true, rows: [{ id: '3' }, { id: '4' }, { id: null }] }));
    expect(many.evaluation.operations).toEqual([
      { action: 'delete', key: 'feed:3' },
      { action: 'delete', key: 'feed:4' },
    ]);
  });

  it('a failed lookup leads to the fallback, or a dead letter without one', () => {
    const failing = () => ({ ok: false as const, message: 'connection refused' });
    const dl = run(rules, change('insert', null, { id: '10', user_id: '1' }), failing).evaluation;
    expect(dl.operations).toEqual([{ action: 'delete', key: 'comment:10' }]);
    expect(dl.deadLetters).toHaveLength(1);
    expect(dl.deadLetters[0]).toMatchObject({ reason: 'lookup_failed', key: { id: '10' } });
    expect(dl.deadLetters[0]!.detail).toContain('connection refused');

    const withFallback = compile({
      lookup: { author: AUTHOR },
      invalidate: ['comments:name={author.name}:email={author.email}'],
      fallback: { bump: ['comments:version'] },
    }).rules;
    const fb = run(withFallback, change('insert', null, { id: '10', user_id: '1' }), failing).evaluation;
    expect(fb.operations).toEqual([{ action: 'bump', key: 'comments:version', version: 7n }]);
    expect(fb.fallbacks.map((f) => f.reason)).toEqual(['lookup_failed']);
  });

  it('a lookup parameter whose value is unknown is an unknown value, and no query runs', () => {
    const { requests, evaluation } = run(rules, change('delete', { id: '10' }, null), () => ({ ok: true, rows: [] }));
    expect(requests).toEqual([]);
    expect(evaluation.deadLetters[0]).toMatchObject({ reason: 'unknown_value' });
    expect(evaluation.deadLetters[0]!.detail).toContain('"user_id"');
  });

  it('a lookup result missing a referenced column fails the template, naming the column', () => {
    const { evaluation } = run(rules, change('insert', null, { id: '10', user_id: '1' }), () => ({ ok: true, rows: [{ name: 'Ann' }] }));
    expect(evaluation.deadLetters[0]!.detail).toContain('returned no column "email"');
  });

  it('tags and patterns render like keys; values in patterns are glob-escaped', () => {
    const r = compile({ tags: ['comment:{id}'], patterns: ['c:{user_id}:*'] }).rules;
    const e = evaluate(change('insert', null, { id: '1', user_id: 'a*b?[c]' }), r);
    expect(e.operations).toEqual([
      { action: 'tag', tag: 'comment:1' },
      { action: 'pattern', pattern: 'c:a\\*b\\?\\[c\\]:*' },
    ]);
  });
});

describe('lookup compile problems', () => {
  it.each([
    [{ ...AUTHOR, params: [] }, /uses placeholders up to \$1 but params lists 0 columns/],
    [{ ...AUTHOR, params: ['user_id', 'x'] }, /uses placeholders up to \$1 but params lists 2 columns/],
    [{ ...AUTHOR, sql: 'SELECT 1 WHERE $2 = 1', params: ['a', 'b'] }, /never uses \$1/],
    [{ ...AUTHOR, sql: "SELECT '$1' AS x", params: ['a'] }, /uses no placeholder but params lists 1 column/],
    [{ ...AUTHOR, sql: 'SELECT name FROM users WHERE id = $1; DELETE FROM users', params: ['a'] }, /one SELECT statement/],
    [{ ...AUTHOR, sql: 'SELECT $$ $1 $$ AS x', params: ['a'] }, /uses no placeholder but params lists 1 column/],
    [{ ...AUTHOR, sql: "SELECT E'\\' $2' AS x WHERE $1 = 1", params: ['a', 'b'] }, /uses placeholders up to \$1 but params lists 2 columns/],
    [{ ...AUTHOR, sql: 'SELECT x$2 FROM t WHERE id = $1', params: ['a', 'b'] }, /uses placeholders up to \$1 but params lists 2 columns/],
    [{ ...AUTHOR, sql: "SELECT 1 WHERE x = $1; -- ';' and more\n", params: ['a'] }, /^$/],
  ])('%o', (lookup, message) => {
    const { problems } = compile({ lookup: { author: lookup }, invalidate: ['k:{author.x}'] });
    expect(problems.map((p) => p.message).join('\n')).toMatch(message);
  });

  it('warns about an unused lookup and about patterns', () => {
    const { problems } = compile({ lookup: { author: AUTHOR }, patterns: ['p:*'] });
    expect(problems.map((p) => [p.path.join('.'), p.severity])).toEqual([
      ['rules.0.patterns.0', 'warning'],
      ['rules.0.lookup.author', 'warning'],
    ]);
  });

  it('a template naming an undeclared lookup is an error at its path', () => {
    const { problems } = compile({ lookup: { author: AUTHOR }, invalidate: ['k:{autor.name}', 'k:{author.name}'] });
    expect(problems).toEqual([
      { file: 'm.yaml', path: ['rules', 0, 'invalidate', 0], message: expect.stringMatching(/names no lookup "autor" \(declared: author\)/) },
    ]);
  });
});
