import { describe, expect, it } from 'vitest';
import { OPERATIONS, type Operation } from '../../src/core/change.js';
import { compileRules, parseTableName, ruleColumns, tableKey, type CompiledRule, type RuleSpec } from '../../src/core/rules.js';

describe('parseTableName', () => {
  const valid: Array<{ text: string; schema: string; table: string }> = [
    { text: 'users', schema: 'public', table: 'users' },
    { text: 'app.users', schema: 'app', table: 'users' },
    { text: 'public.users', schema: 'public', table: 'users' },
    { text: '"My Schema"."My.Table"', schema: 'My Schema', table: 'My.Table' },
    { text: '"My.Table"', schema: 'public', table: 'My.Table' },
    { text: 'app."Order Items"', schema: 'app', table: 'Order Items' },
    { text: '"a""b"', schema: 'public', table: 'a"b' },
    { text: '"s""x"."t"""', schema: 's"x', table: 't"' },
  ];

  it.each(valid)('$text -> $schema.$table', ({ text, schema, table }) => {
    expect(parseTableName(text)).toEqual({ schema, table });
  });

  const invalid: Array<{ text: string; message: RegExp }> = [
    { text: 'a.b.c', message: /table must be "table" or "schema.table", got "a\.b\.c"/ },
    { text: '.x', message: /table must be/ },
    { text: 'x.', message: /table must be/ },
    { text: '', message: /table must be/ },
    { text: '""', message: /table must be/ },
    { text: '"unclosed', message: /unclosed quote in table name/ },
    { text: 'app."users', message: /unclosed quote/ },
  ];

  it.each(invalid)('rejects "$text"', ({ text, message }) => {
    const result = parseTableName(text);
    expect(typeof result).toBe('string');
    expect(result).toMatch(message);
  });
});

function onlyRule(rules: RuleSpec[], file = 'm.yaml'): CompiledRule {
  const { rules: set, problems } = compileRules([{ file, rules }]);
  expect(problems).toEqual([]);
  const all = [...set.byTable.values()].flat();
  expect(all).toHaveLength(1);
  return all[0]!;
}

describe('compileRules', () => {
  it('compiles a rule: id, table, templates, no fallback, no condition', () => {
    const rule = onlyRule([{ table: 'users', invalidate: ['user:{id}', 'user:email:{email}'], bump: ['users:version'] }], 'maps/users.yaml');
    expect(rule.id).toBe('maps/users.yaml#rules[0]');
    expect(rule.schema).toBe('public');
    expect(rule.table).toBe('users');
    expect(rule.actions.invalidate.map((t) => t.source)).toEqual(['user:{id}', 'user:email:{email}']);
    expect(rule.actions.bump.map((t) => t.source)).toEqual(['users:version']);
    expect(rule.fallback).toBeNull();
    expect(rule.changed).toBeNull();
  });

  it('indexes rules by schema.table and lists each table once, in order of first appearance', () => {
    const { rules, problems } = compileRules([
      {
        file: 'a.yaml',
        rules: [
          { table: 'users', invalidate: ['user:{id}'] },
          { table: 'app.orders', invalidate: ['order:{id}'] },
        ],
      },
      { file: 'b.yaml', rules: [{ table: 'public.users', bump: ['users:version'] }] },
    ]);
    expect(problems).toEqual([]);
    expect(rules.tables).toEqual([
      ['public', 'users'],
      ['app', 'orders'],
    ]);
    // Rules for the same table add up, across files, in order.
    expect(rules.byTable.get(tableKey('public', 'users'))!.map((r) => r.id)).toEqual(['a.yaml#rules[0]', 'b.yaml#rules[0]']);
    expect(rules.byTable.get('app.orders')!.map((r) => r.id)).toEqual(['a.yaml#rules[1]']);
    expect(rules.byTable.has('public.orders')).toBe(false);
  });

  const onCases: Array<{ on: Operation[] | undefined; expected: Operation[] }> = [
    { on: undefined, expected: [...OPERATIONS] },
    { on: ['insert'], expected: ['insert'] },
    { on: ['insert', 'update'], expected: ['insert', 'update'] },
    { on: ['delete'], expected: ['delete', 'truncate'] },
    { on: ['update', 'delete'], expected: ['update', 'delete', 'truncate'] },
    { on: ['truncate'], expected: ['truncate'] },
    { on: ['delete', 'truncate'], expected: ['delete', 'truncate'] },
  ];

  it.each(onCases)('on: $on reacts to $expected', ({ on, expected }) => {
    const rule = onlyRule([{ table: 't', on, invalidate: ['k'] }]);
    expect([...rule.on].sort()).toEqual([...expected].sort());
  });

  it('keeps when.changed columns', () => {
    const rule = onlyRule([{ table: 't', when: { changed: ['content', 'user_id'] }, invalidate: ['k:{id}'] }]);
    expect(rule.changed).toEqual(['content', 'user_id']);
  });

  it('compiles a fallback of fixed keys', () => {
    const rule = onlyRule([{ table: 't', invalidate: ['k:{id}'], fallback: { bump: ['t:version'], invalidate: ['t:all'] } }]);
    expect(rule.fallback!.bump.map((t) => t.source)).toEqual(['t:version']);
    expect(rule.fallback!.invalidate.map((t) => t.source)).toEqual(['t:all']);
  });

  const problemCases: Array<{ name: string; rules: RuleSpec[]; problems: Array<{ path: (string | number)[]; message: RegExp }> }> = [
    {
      name: 'bad table name',
      rules: [{ table: 'a.b.c', invalidate: ['k'] }],
      problems: [{ path: ['rules', 0, 'table'], message: /schema\.table/ }],
    },
    {
      name: 'bad template in the second rule',
      rules: [
        { table: 't', invalidate: ['ok'] },
        { table: 't', invalidate: ['fine:{id}', 'bad:{id'] },
      ],
      problems: [{ path: ['rules', 1, 'invalidate', 1], message: /unclosed "\{"/ }],
    },
    {
      name: 'bad bump template',
      rules: [{ table: 't', bump: ['v:{}'] }],
      problems: [{ path: ['rules', 0, 'bump', 0], message: /empty placeholder/ }],
    },
    {
      name: 'rule with no action',
      rules: [{ table: 't' }],
      problems: [{ path: ['rules', 0], message: /rule has no action/ }],
    },
    {
      name: 'rule with empty action lists',
      rules: [{ table: 't', invalidate: [], bump: [] }],
      problems: [{ path: ['rules', 0], message: /rule has no action/ }],
    },
    {
      name: 'fallback key using a column',
      rules: [{ table: 't', invalidate: ['k:{id}'], fallback: { invalidate: ['fixed', 'user:{id}'] } }],
      problems: [{ path: ['rules', 0, 'fallback', 'invalidate', 1], message: /fallback key "user:\{id\}" uses \{id\}/ }],
    },
    {
      name: 'fallback bump using a column',
      rules: [{ table: 't', invalidate: ['k:{id}'], fallback: { bump: ['v:{tenant}'] } }],
      problems: [{ path: ['rules', 0, 'fallback', 'bump', 0], message: /uses \{tenant\}/ }],
    },
    {
      name: 'fallback with no action',
      rules: [{ table: 't', invalidate: ['k:{id}'], fallback: {} }],
      problems: [{ path: ['rules', 0, 'fallback'], message: /fallback has no action/ }],
    },
    {
      name: 'empty when.changed',
      rules: [{ table: 't', invalidate: ['k:{id}'], when: { changed: [] } }],
      problems: [{ path: ['rules', 0, 'when', 'changed'], message: /lists no column/ }],
    },
    {
      name: 'several problems are all reported',
      rules: [
        { table: '"x', invalidate: ['k'] },
        { table: 't', invalidate: ['a}', '{b'], bump: ['{ c }'] },
      ],
      problems: [
        { path: ['rules', 0, 'table'], message: /unclosed quote/ },
        { path: ['rules', 1, 'invalidate', 0], message: /unmatched "\}"/ },
        { path: ['rules', 1, 'invalidate', 1], message: /unclosed "\{"/ },
        { path: ['rules', 1, 'bump', 0], message: /spaces/ },
      ],
    },
  ];

  it.each(problemCases)('reports: $name', ({ rules, problems }) => {
    const result = compileRules([{ file: 'mappings/x.yaml', rules }]);
    expect(result.problems).toHaveLength(problems.length);
    result.problems.forEach((p, i) => {
      expect(p.file).toBe('mappings/x.yaml');
      expect(p.path).toEqual(problems[i]!.path);
      expect(p.message).toMatch(problems[i]!.message);
    });
  });

  it('names the file each problem came from', () => {
    const { problems } = compileRules([
      { file: 'a.yaml', rules: [{ table: 't', invalidate: ['ok'] }] },
      { file: 'b.yaml', rules: [{ table: 't', invalidate: ['ok'] }, { table: 't' }] },
    ]);
    expect(problems).toEqual([{ file: 'b.yaml', path: ['rules', 1], message: expect.stringMatching(/no action/) }]);
  });

  it('compiles nothing from no mappings', () => {
    const { rules, problems } = compileRules([]);
    expect(problems).toEqual([]);
    expect(rules.byTable.size).toBe(0);
    expect(rules.tables).toEqual([]);
  });
});

describe('ruleColumns', () => {
  const cases: Array<{ name: string; spec: RuleSpec; columns: string[] }> = [
    { name: 'fixed keys only', spec: { table: 't', bump: ['t:version'] }, columns: [] },
    {
      name: 'invalidate and bump, deduplicated in order',
      spec: { table: 't', invalidate: ['a:{id}', 'b:{email}:{id}'], bump: ['v:{tenant}:{id}'] },
      columns: ['id', 'email', 'tenant'],
    },
    {
      name: 'when.changed columns are included',
      spec: { table: 't', invalidate: ['c:{id}'], when: { changed: ['content', 'id', 'user_id'] } },
      columns: ['id', 'content', 'user_id'],
    },
  ];

  it.each(cases)('$name', ({ spec, columns }) => {
    expect(ruleColumns(onlyRule([spec]))).toEqual(columns);
  });
});
