import { describe, expect, it } from 'vitest';
import type { Change, Evaluation, KeyOperation } from '../../src/core/change.js';
import { deadLetter, emptyEvaluation, evaluate } from '../../src/core/evaluate.js';
import { compileRules, type RuleSet, type RuleSpec } from '../../src/core/rules.js';

const FILE = 'mappings/test.yaml';

function compile(specs: RuleSpec[]): RuleSet {
  const { rules, problems } = compileRules([{ file: FILE, rules: specs }]);
  expect(problems).toEqual([]);
  return rules;
}

function change(partial: Partial<Change> & Pick<Change, 'op'>): Change {
  return {
    schema: 'public',
    table: 'users',
    before: null,
    after: null,
    keyColumns: ['id'],
    version: 0x16b374d848n,
    position: '16/B374D848',
    ...partial,
  };
}

const del = (key: string): KeyOperation => ({ action: 'delete', key });
const bump = (key: string, version: bigint | null = 0x16b374d848n): KeyOperation => ({ action: 'bump', key, version });

const USERS: RuleSpec = {
  table: 'public.users',
  invalidate: ['user:{id}', 'user:email:{email}'],
  bump: ['users:version'],
};

const USERS_WITH_FALLBACK: RuleSpec = { ...USERS, fallback: { bump: ['users:all-version'], invalidate: ['users:list'] } };

describe('evaluate: keys from rows', () => {
  const cases: Array<{ name: string; rules: RuleSpec[]; change: Change; operations: KeyOperation[] }> = [
    {
      name: 'insert renders the new row',
      rules: [USERS],
      change: change({ op: 'insert', after: { id: '1', email: 'a@x', name: 'Ann' } }),
      operations: [del('user:1'), del('user:email:a@x'), bump('users:version')],
    },
    {
      name: 'delete renders the old row',
      rules: [USERS],
      change: change({ op: 'delete', before: { id: '2', email: 'b@x' } }),
      operations: [del('user:2'), del('user:email:b@x'), bump('users:version')],
    },
    {
      name: 'update with a changed value invalidates the old and the new key',
      rules: [USERS],
      change: change({ op: 'update', before: { id: '1', email: 'a@x' }, after: { id: '1', email: 'b@x' } }),
      operations: [del('user:1'), del('user:email:a@x'), del('user:email:b@x'), bump('users:version')],
    },
    {
      name: 'update with the same keys invalidates each once',
      rules: [USERS],
      change: change({ op: 'update', before: { id: '1', email: 'a@x', name: 'A' }, after: { id: '1', email: 'a@x', name: 'B' } }),
      operations: [del('user:1'), del('user:email:a@x'), bump('users:version')],
    },
    {
      name: 'update that changes the key column',
      rules: [{ table: 'users', invalidate: ['user:{id}'] }],
      change: change({ op: 'update', before: { id: '1' }, after: { id: '9' } }),
      operations: [del('user:1'), del('user:9')],
    },
    {
      name: 'bump carries a null version where the source has none',
      rules: [{ table: 'users', bump: ['v:{id}'] }],
      change: change({ op: 'insert', after: { id: '3' }, version: null }),
      operations: [bump('v:3', null)],
    },
    {
      name: 'bump carries the change version',
      rules: [{ table: 'users', bump: ['users:version'] }],
      change: change({ op: 'insert', after: { id: '3' }, version: 12345678901234567890n }),
      operations: [bump('users:version', 12345678901234567890n)],
    },
    {
      name: 'NULL value renders no key (and needs no fallback)',
      rules: [USERS],
      change: change({ op: 'insert', after: { id: '1', email: null } }),
      operations: [del('user:1'), bump('users:version')],
    },
    {
      name: 'update from NULL to a value invalidates only the new key',
      rules: [{ table: 'users', invalidate: ['user:email:{email}'] }],
      change: change({ op: 'update', before: { id: '1', email: null }, after: { id: '1', email: 'n@x' } }),
      operations: [del('user:email:n@x')],
    },
    {
      name: 'unmapped table gives nothing',
      rules: [USERS],
      change: change({ op: 'insert', table: 'orders', after: { id: '1', email: 'a@x' } }),
      operations: [],
    },
    {
      name: 'same table name in another schema is not mapped',
      rules: [USERS],
      change: change({ op: 'insert', schema: 'app', after: { id: '1', email: 'a@x' } }),
      operations: [],
    },
    {
      name: 'rule whose on does not include the operation gives nothing',
      rules: [{ ...USERS, on: ['insert', 'delete'] }],
      change: change({ op: 'update', before: { id: '1', email: 'a@x' }, after: { id: '1', email: 'b@x' } }),
      operations: [],
    },
    {
      name: 'insert-only rule ignores deletes',
      rules: [{ ...USERS, on: ['insert'] }],
      change: change({ op: 'delete', before: { id: '1', email: 'a@x' } }),
      operations: [],
    },
    {
      name: 'two rules on the same table both apply, in order',
      rules: [
        { table: 'users', invalidate: ['user:{id}'] },
        { table: 'public.users', invalidate: ['profile:{name}'], bump: ['profiles:version'] },
      ],
      change: change({ op: 'insert', after: { id: '1', name: 'ann' } }),
      operations: [del('user:1'), del('profile:ann'), bump('profiles:version')],
    },
  ];

  it.each(cases)('$name', ({ rules, change: c, operations }) => {
    const result = evaluate(c, compile(rules));
    expect(result.operations).toEqual(operations);
    expect(result.fallbacks).toEqual([]);
    expect(result.deadLetters).toEqual([]);
  });

  it('appends to the evaluation it is given', () => {
    const rules = compile([{ table: 'users', invalidate: ['user:{id}'] }]);
    const out: Evaluation = emptyEvaluation();
    evaluate(change({ op: 'insert', after: { id: '1' } }), rules, out);
    const returned = evaluate(change({ op: 'insert', after: { id: '2' } }), rules, out);
    expect(returned).toBe(out);
    expect(out.operations).toEqual([del('user:1'), del('user:2')]);
  });
});

describe('evaluate: when.changed', () => {
  const rules: RuleSpec[] = [
    { table: 'comments', when: { changed: ['content', 'user_id'] }, invalidate: ['comment:{id}'] },
  ];
  const c = (before: Record<string, string | null>, after: Record<string, string | null>) =>
    change({ op: 'update', table: 'comments', before, after });

  const cases: Array<{ name: string; change: Change; operations: KeyOperation[] }> = [
    {
      name: 'skips an update whose listed columns are equal',
      change: c({ id: '1', content: 'x', user_id: '5', likes: '1' }, { id: '1', content: 'x', user_id: '5', likes: '2' }),
      operations: [],
    },
    {
      name: 'counts an update where one listed column differs',
      change: c({ id: '1', content: 'x', user_id: '5' }, { id: '1', content: 'y', user_id: '5' }),
      operations: [del('comment:1')],
    },
    {
      name: 'counts a change from a value to NULL',
      change: c({ id: '1', content: 'x', user_id: '5' }, { id: '1', content: 'x', user_id: null }),
      operations: [del('comment:1')],
    },
    {
      name: 'both NULL is equal',
      change: c({ id: '1', content: null, user_id: '5' }, { id: '1', content: null, user_id: '5' }),
      operations: [],
    },
    {
      name: 'does not skip when a listed column is unknown in the old row',
      change: c({ id: '1' }, { id: '1', content: 'x', user_id: '5' }),
      operations: [del('comment:1')],
    },
    {
      name: 'does not skip when a listed column is unknown in the new row (unchanged TOAST)',
      change: change({
        op: 'update',
        table: 'comments',
        before: { id: '1', content: 'x', user_id: '5' },
        after: { id: '1', content: undefined, user_id: '5' },
      }),
      operations: [del('comment:1')],
    },
  ];

  it.each(cases)('$name', ({ change: ch, operations }) => {
    const result = evaluate(ch, compile(rules));
    expect(result.operations).toEqual(operations);
    expect(result.fallbacks).toEqual([]);
    expect(result.deadLetters).toEqual([]);
  });

  it('does not skip when a listed column is unknown in both rows (key-only old row, unchanged TOAST)', () => {
    const set = compile([{ table: 'docs', when: { changed: ['body'] }, invalidate: ['doc:{id}'] }]);
    const result = evaluate(change({ op: 'update', table: 'docs', before: { id: '1' }, after: { id: '1', body: undefined } }), set);
    expect(result.operations).toEqual([del('doc:1')]);
  });

  it('does not apply to inserts and deletes', () => {
    const set = compile(rules);
    expect(evaluate(change({ op: 'insert', table: 'comments', after: { id: '1' } }), set).operations).toEqual([del('comment:1')]);
    expect(evaluate(change({ op: 'delete', table: 'comments', before: { id: '1' } }), set).operations).toEqual([del('comment:1')]);
  });
});

describe('evaluate: unknown values', () => {
  // REPLICA IDENTITY DEFAULT: the old row of an update or delete holds only the key.
  const keyOnlyUpdate = change({
    op: 'update',
    before: { id: '1' },
    after: { id: '1', email: 'new@x', name: 'Secret Name' },
  });

  it('runs the fallback and records it', () => {
    const result = evaluate(keyOnlyUpdate, compile([USERS_WITH_FALLBACK]));
    // The templates that can be rendered still are (more invalidation is always safe), then the fallback.
    expect(result.operations).toEqual([
      del('user:1'),
      del('user:email:new@x'),
      bump('users:version'),
      del('users:list'),
      bump('users:all-version'),
    ]);
    expect(result.fallbacks).toEqual([
      {
        schema: 'public',
        table: 'users',
        op: 'update',
        reason: 'unknown_value',
        rule: `${FILE}#rules[0]`,
        detail: expect.stringMatching(/"user:email:\{email\}" needs column "email", whose value is unknown in the old row/),
      },
    ]);
    expect(result.deadLetters).toEqual([]);
  });

  it('produces a dead letter without a fallback, carrying only the key columns', () => {
    const result = evaluate(
      change({
        op: 'update',
        before: { id: '1' },
        after: { id: '1', email: 'new@x', name: 'Secret Name' },
        keyColumns: ['id'],
      }),
      compile([USERS]),
    );
    expect(result.operations).toEqual([del('user:1'), del('user:email:new@x'), bump('users:version')]);
    expect(result.fallbacks).toEqual([]);
    expect(result.deadLetters).toEqual([
      {
        schema: 'public',
        table: 'users',
        op: 'update',
        position: '16/B374D848',
        reason: 'unknown_value',
        detail: expect.stringMatching(new RegExp(`^${FILE}#rules\\[0\\]: .*"email".*old row`)),
        key: { id: '1' },
      },
    ]);
    const text = JSON.stringify(result.deadLetters);
    expect(text).not.toContain('new@x');
    expect(text).not.toContain('Secret Name');
  });

  it('dead letter of a delete names the old row', () => {
    const result = evaluate(change({ op: 'delete', before: { id: '7' } }), compile([USERS]));
    expect(result.operations).toEqual([del('user:7'), bump('users:version')]);
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.key).toEqual({ id: '7' });
    expect(result.deadLetters[0]!.detail).toMatch(/unknown in the old row/);
  });

  it('names the new row when the unknown value is there (unchanged TOAST)', () => {
    const result = evaluate(
      change({ op: 'update', before: { id: '1', email: 'a@x' }, after: { id: '1' } }),
      compile([{ table: 'users', invalidate: ['user:email:{email}'] }]),
    );
    expect(result.operations).toEqual([del('user:email:a@x')]);
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.detail).toMatch(/unknown in the new row/);
  });

  it('insert with a template naming a column the row lacks names the new row', () => {
    const result = evaluate(
      change({ op: 'insert', after: { id: '1', email: 'a@x' } }),
      compile([{ table: 'users', invalidate: ['user:{id}', 'user:{emial}'] }]),
    );
    expect(result.operations).toEqual([del('user:1')]);
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]).toMatchObject({ op: 'insert', reason: 'unknown_value', key: { id: '1' } });
    expect(result.deadLetters[0]!.detail).toMatch(/"emial".*new row/);
  });

  it('a rule with several unknown templates gives one dead letter, naming the first', () => {
    const result = evaluate(
      change({ op: 'delete', before: { id: '1' } }),
      compile([{ table: 'users', invalidate: ['a:{email}', 'b:{id}', 'c:{name}'] }]),
    );
    expect(result.operations).toEqual([del('b:1')]);
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.detail).toMatch(/"a:\{email\}" needs column "email"/);
  });

  it('composite keys: every key column is carried, nothing else', () => {
    const result = evaluate(
      change({
        op: 'delete',
        table: 'memberships',
        before: { org_id: '3', user_id: '4' },
        keyColumns: ['org_id', 'user_id'],
      }),
      compile([{ table: 'memberships', invalidate: ['m:{org_id}:{user_id}:{role}'] }]),
    );
    expect(result.deadLetters.map((d) => d.key)).toEqual([{ org_id: '3', user_id: '4' }]);
  });

  it('a dead letter from a full old row still carries only the key columns', () => {
    const result = evaluate(
      change({
        op: 'delete',
        before: { id: '5', email: 'private@x', password_hash: 'hash!' },
        keyColumns: ['id'],
      }),
      compile([{ table: 'users', invalidate: ['user:{missing}'] }]),
    );
    expect(result.deadLetters).toHaveLength(1);
    expect(result.deadLetters[0]!.key).toEqual({ id: '5' });
    expect(JSON.stringify(result.deadLetters)).not.toMatch(/private@x|hash!/);
  });

  it('one dead letter per rule that cannot render, rules with fallbacks fall back', () => {
    const result = evaluate(
      keyOnlyUpdate,
      compile([
        USERS,
        { table: 'users', invalidate: ['by-name:{name}'], fallback: { bump: ['names:version'] } },
        { table: 'users', invalidate: ['user:{id}:profile'] },
      ]),
    );
    expect(result.deadLetters.map((d) => d.detail.split(':')[0])).toEqual([`${FILE}#rules[0]`]);
    expect(result.fallbacks.map((f) => f.rule)).toEqual([`${FILE}#rules[1]`]);
    expect(result.operations).toEqual([
      del('user:1'),
      del('user:email:new@x'),
      bump('users:version'),
      del('by-name:Secret Name'),
      bump('names:version'),
      del('user:1:profile'),
    ]);
  });
});

describe('evaluate: truncate', () => {
  it('runs the fallback', () => {
    const result = evaluate(change({ op: 'truncate' }), compile([USERS_WITH_FALLBACK]));
    expect(result.operations).toEqual([del('users:list'), bump('users:all-version')]);
    expect(result.fallbacks).toEqual([
      { schema: 'public', table: 'users', op: 'truncate', reason: 'truncate', rule: `${FILE}#rules[0]`, detail: expect.any(String) },
    ]);
    expect(result.deadLetters).toEqual([]);
  });

  it('without a fallback is a dead letter with no key', () => {
    const result = evaluate(change({ op: 'truncate' }), compile([USERS]));
    expect(result.operations).toEqual([]);
    expect(result.fallbacks).toEqual([]);
    expect(result.deadLetters).toEqual([
      {
        schema: 'public',
        table: 'users',
        op: 'truncate',
        position: '16/B374D848',
        reason: 'truncate',
        detail: expect.stringContaining(`${FILE}#rules[0]`),
        key: null,
      },
    ]);
  });

  it('reaches a rule on delete, not a rule on insert only', () => {
    const result = evaluate(
      change({ op: 'truncate' }),
      compile([
        { table: 'users', on: ['delete'], invalidate: ['a:{id}'], fallback: { bump: ['a:version'] } },
        { table: 'users', on: ['insert'], invalidate: ['b:{id}'], fallback: { bump: ['b:version'] } },
      ]),
    );
    expect(result.operations).toEqual([bump('a:version')]);
    expect(result.fallbacks.map((f) => f.rule)).toEqual([`${FILE}#rules[0]`]);
  });

  it('fallback bumps carry the change version', () => {
    const result = evaluate(change({ op: 'truncate', version: 77n }), compile([USERS_WITH_FALLBACK]));
    expect(result.operations).toContainEqual(bump('users:all-version', 77n));
  });
});

describe('deadLetter', () => {
  it('leaves the key out when a key column is unknown', () => {
    const d = deadLetter(change({ op: 'update', before: {}, after: { id: '1' }, keyColumns: ['id'] }), 'unknown_value', 'x');
    expect(d.key).toBeNull();
  });

  it('has no key when the source names no key columns', () => {
    const d = deadLetter(change({ op: 'insert', after: { id: '1', email: 'a@x' }, keyColumns: [] }), 'unknown_value', 'x');
    expect(d.key).toBeNull();
  });

  it('keeps a NULL key value as null', () => {
    const d = deadLetter(change({ op: 'insert', after: { id: null, email: 'a@x' }, keyColumns: ['id'] }), 'unknown_value', 'x');
    expect(d.key).toEqual({ id: null });
  });
});
