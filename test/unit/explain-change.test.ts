import { describe, expect, it } from 'vitest';
import { explainChange, type ExplainArgs } from '../../src/commands/explain.js';
import { compileRules, type RuleSet } from '../../src/core/rules.js';

const FILE = 'mappings/app.yaml';

function ruleSet(): RuleSet {
  const { rules, problems } = compileRules([
    {
      file: FILE,
      rules: [
        { table: 'users', invalidate: ['user:{id}', 'user:email:{email}'], bump: ['users:version'] },
        {
          table: 'public.comments',
          on: ['insert', 'update', 'delete'],
          when: { changed: ['content'] },
          invalidate: ['comment:{id}', 'comments:user:{user_id}'],
          fallback: { bump: ['comments:version'] },
        },
        { table: 'app.flags', on: ['insert'], invalidate: ['flag:{name}:{enabled}:{weight}'] },
      ],
    },
  ]);
  expect(problems).toEqual([]);
  return rules;
}

const BUMP_SUFFIX = ' (commit position; INCR where the source has none)';

describe('explainChange: key operations', () => {
  const cases: Array<{ name: string; args: ExplainArgs; lines: unknown[] }> = [
    {
      name: 'insert: DEL and BUMP lines',
      args: { table: 'users', op: 'insert', after: '{"id": "1", "email": "a@x"}' },
      lines: ['DEL user:1', 'DEL user:email:a@x', `BUMP users:version${BUMP_SUFFIX}`],
    },
    {
      name: 'update: old and new keys',
      args: { table: 'public.users', op: 'update', before: '{"id": 1, "email": "a@x"}', after: '{"id": 1, "email": "b@x"}' },
      lines: ['DEL user:1', 'DEL user:email:a@x', 'DEL user:email:b@x', `BUMP users:version${BUMP_SUFFIX}`],
    },
    {
      name: 'numbers as digits, booleans as true/false, null renders no key',
      args: { table: 'app.flags', op: 'insert', after: '{"name": "beta", "enabled": true, "weight": 10}' },
      lines: ['DEL flag:beta:true:10'],
    },
    {
      name: 'JSON null is SQL NULL: no key',
      args: { table: 'app.flags', op: 'insert', after: '{"name": "beta", "enabled": null, "weight": 1}' },
      lines: ['no key operations'],
    },
    {
      name: 'delete with a key-only old row: keys it can render, then the fallback',
      args: { table: 'comments', op: 'delete', before: '{"id": 7}' },
      lines: [
        'DEL comment:7',
        `BUMP comments:version${BUMP_SUFFIX}`,
        `fallback (unknown_value) from ${FILE}#rules[1]: "comments:user:{user_id}" needs column "user_id", whose value is unknown in the old row`,
      ],
    },
    {
      name: 'unknown value without a fallback: dead letter',
      args: { table: 'users', op: 'delete', before: '{"id": 7}' },
      lines: [
        'DEL user:7',
        `BUMP users:version${BUMP_SUFFIX}`,
        `dead letter (unknown_value): ${FILE}#rules[0]: "user:email:{email}" needs column "email", whose value is unknown in the old row`,
      ],
    },
    {
      name: 'truncate without a fallback: dead letter',
      args: { table: 'users', op: 'truncate' },
      lines: [`dead letter (truncate): ${FILE}#rules[0]: TRUNCATE has no rows to render keys from`],
    },
    {
      name: 'truncate with a fallback (on: delete reaches truncate)',
      args: { table: 'comments', op: 'truncate' },
      lines: [`BUMP comments:version${BUMP_SUFFIX}`, expect.stringMatching(/^fallback \(truncate\) from mappings\/app\.yaml#rules\[1\]: /)],
    },
    {
      name: 'when.changed skips an update that leaves the columns alone',
      args: { table: 'comments', op: 'update', before: '{"id": 1, "content": "x", "user_id": 2}', after: '{"id": 1, "content": "x", "user_id": 3}' },
      lines: ['no key operations'],
    },
    {
      name: 'a rule whose on leaves the operation out',
      args: { table: 'app.flags', op: 'delete', before: '{"name": "beta", "enabled": true, "weight": 1}' },
      lines: ['no key operations'],
    },
    {
      name: 'no rule maps the table',
      args: { table: 'orders', op: 'insert', after: '{"id": 1}' },
      lines: ['no rule maps public.orders'],
    },
    {
      name: 'the schema counts',
      args: { table: 'app.users', op: 'insert', after: '{"id": 1}' },
      lines: ['no rule maps app.users'],
    },
  ];

  it.each(cases)("$name", async ({ args, lines }) => {
    const result = await explainChange(ruleSet(), args);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.text.endsWith('\n')).toBe(true);
    expect(result.text.slice(0, -1).split('\n')).toEqual(lines);
  });

  it('a column named __proto__ or constructor in the JSON is an ordinary column', async () => {
    const { rules } = compileRules([{ file: FILE, rules: [{ table: 't', invalidate: ['k:{__proto__}:{constructor}'] }] }]);
    const result = await explainChange(rules, { table: 't', op: 'insert', after: '{"__proto__": "p", "constructor": "c"}' });
    expect(result).toEqual({ ok: true, text: 'DEL k:p:c\n' });
  });

  it('a column left out is unknown, not read off Object.prototype', async () => {
    const { rules } = compileRules([{ file: FILE, rules: [{ table: 't', invalidate: ['k:{constructor}'] }] }]);
    const result = await explainChange(rules, { table: 't', op: 'insert', after: '{}' });
    expect(result.ok && result.text).toMatch(/^dead letter \(unknown_value\): .*"constructor".*new row\n$/);
  });

  it('an integer beyond 2^53 is not silently rounded into another key', async () => {
    // int8 ids past Number.MAX_SAFE_INTEGER are ordinary in Postgres. JSON.parse rounds
    // 9007199254740993 to 9007199254740992, which would name a key the worker never deletes.
    const result = await explainChange(ruleSet(), { table: 'users', op: 'insert', after: '{"id": 9007199254740993, "email": "a@x"}' });
    if (result.ok) {
      expect(result.text).toContain('DEL user:9007199254740993\n');
    } else {
      expect(result.error).toMatch(/--after/);
    }
  });
});

describe('explainChange: argument errors', () => {
  const cases: Array<{ name: string; args: ExplainArgs; error: RegExp }> = [
    { name: 'no --table', args: { op: 'insert', after: '{}' }, error: /^--table is required$/ },
    { name: 'no --op', args: { table: 'users', after: '{}' }, error: /^--op must be one of insert, update, delete, truncate$/ },
    { name: 'unknown --op', args: { table: 'users', op: 'upsert', after: '{}' }, error: /--op must be one of/ },
    { name: 'bad table name', args: { table: 'a.b.c', op: 'insert', after: '{}' }, error: /schema\.table/ },
    { name: 'bad JSON', args: { table: 'users', op: 'insert', after: '{id: 1}' }, error: /^--after is not valid JSON: / },
    { name: 'bad JSON in --before', args: { table: 'users', op: 'delete', before: '{"id": 1' }, error: /^--before is not valid JSON: / },
    { name: 'missing --before for update', args: { table: 'users', op: 'update', after: '{"id": 1}' }, error: /^--before is required for update$/ },
    { name: 'missing --after for update', args: { table: 'users', op: 'update', before: '{"id": 1}' }, error: /^--after is required for update$/ },
    { name: 'missing --before for delete', args: { table: 'users', op: 'delete', after: '{"id": 1}' }, error: /^--before is required for delete$/ },
    { name: 'missing --after for insert', args: { table: 'users', op: 'insert' }, error: /^--after is required for insert$/ },
    { name: 'JSON array', args: { table: 'users', op: 'insert', after: '[1, 2]' }, error: /^--after must be a JSON object of column values$/ },
    { name: 'JSON string', args: { table: 'users', op: 'insert', after: '"x"' }, error: /must be a JSON object/ },
    { name: 'JSON number', args: { table: 'users', op: 'insert', after: '3' }, error: /must be a JSON object/ },
    { name: 'JSON null', args: { table: 'users', op: 'insert', after: 'null' }, error: /must be a JSON object/ },
    {
      name: 'nested object value',
      args: { table: 'users', op: 'insert', after: '{"id": 1, "meta": {"a": 1}}' },
      error: /^--after: column "meta" must be a string, number, boolean or null$/,
    },
    { name: 'array value', args: { table: 'users', op: 'delete', before: '{"id": [1]}' }, error: /^--before: column "id"/ },
  ];

  it.each(cases)("$name", async ({ args, error }) => {
    const result = await explainChange(ruleSet(), args);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.error).toMatch(error);
  });
});
