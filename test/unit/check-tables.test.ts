import { describe, expect, it } from 'vitest';
import type { PostgresReached } from '../../src/commands/check/facts.js';
import { lookupChecks } from '../../src/commands/check/lookup-checks.js';
import { tableChecks } from '../../src/commands/check/table-checks.js';
import type { RuleSpec } from '../../src/core/rules.js';
import { compile, database, relation, render, table } from './check-fixtures.js';

const USERS = 'public.users';
const full = relation({ replicaIdentity: 'full' });

describe('check: mapped tables with source.replicaIdentity: full', () => {
  it('says run sets FULL where the rules need it, when the role owns the table', () => {
    const rules = compile([{ table: 'users', invalidate: ['user:{id}', 'user:email:{email}'] }]);
    expect(render(tableChecks(database(), rules, 'full'))).toEqual([
      'ok table public.users: run sets REPLICA IDENTITY FULL at start (source.replicaIdentity: full), because ' +
        'mappings/app.yaml#rules[0] renders columns from old rows that REPLICA IDENTITY DEFAULT (primary key id) does not send',
    ]);
  });

  it('fails when the role cannot alter the table', () => {
    const rules = compile([{ table: 'users', invalidate: ['user:{id}'] }]);
    const facts = database({ tables: [table(USERS, relation({ owned: false, owner: 'app_owner', primaryKey: [] }))] });
    expect(render(tableChecks(facts, rules, 'full'))).toEqual([
      'fail table public.users: run must set REPLICA IDENTITY FULL (source.replicaIdentity: full), because it has no replica ' +
        'identity (REPLICA IDENTITY DEFAULT and no primary key), but the role does not own the table (its owner is app_owner) | ' +
        'ALTER TABLE public.users REPLICA IDENTITY FULL;  (as the owner)',
    ]);
  });

  it('changes nothing where the identity already suffices', () => {
    const rules = compile([{ table: 'users', invalidate: ['user:{id}'] }]);
    expect(render(tableChecks(database(), rules, 'full'))).toEqual([
      'ok table public.users: column id exists; REPLICA IDENTITY DEFAULT (primary key id) suffices',
    ]);
  });
});

describe('check: mapped tables', () => {
  const cases: Array<{ name: string; rules: RuleSpec[]; facts: PostgresReached; lines: Array<string | RegExp> }> = [
    {
      name: 'key columns only, default identity: fine',
      rules: [{ table: 'users', invalidate: ['user:{id}'] }],
      facts: database(),
      lines: ['ok table public.users: column id exists; REPLICA IDENTITY DEFAULT (primary key id) suffices'],
    },
    {
      name: 'non-key columns with FULL identity: fine',
      rules: [{ table: 'users', invalidate: ['user:{id}', 'user:email:{email}'], when: { changed: ['email', 'name'] } }],
      facts: database({ tables: [table(USERS, full)] }),
      lines: ['ok table public.users: columns id, email and name exist; REPLICA IDENTITY FULL'],
    },
    {
      name: 'a misspelt column',
      rules: [{ table: 'users', invalidate: ['user:{id}', 'user:email:{emial}'] }],
      facts: database({ tables: [table(USERS, full)] }),
      lines: [
        'fail table public.users: column "emial" used by mappings/app.yaml#rules[0] "user:email:{emial}" does not exist | ' +
          'correct mappings/app.yaml#rules[0]: did you mean "email"? (the columns of public.users are id, name, email)',
      ],
    },
    {
      name: 'a missing column in when.changed and in two templates',
      rules: [{ table: 'users', when: { changed: ['zzz'] }, invalidate: ['a:{zzz}', 'b:{zzz}:{id}'] }],
      facts: database({ tables: [table(USERS, full)] }),
      lines: [
        'fail table public.users: column "zzz" used by mappings/app.yaml#rules[0] "a:{zzz}", "b:{zzz}:{id}" and when.changed ' +
          'does not exist | correct mappings/app.yaml#rules[0]: the columns of public.users are id, name, email',
      ],
    },
    {
      name: 'old rows read non-key columns, no fallback: dead letters',
      rules: [{ table: 'users', invalidate: ['user:{id}', 'user:email:{email}', 'user:name:{name}'] }],
      facts: database(),
      lines: [
        'fail table public.users: mappings/app.yaml#rules[0] renders "user:email:{email}" and "user:name:{name}" from old ' +
          'rows, but REPLICA IDENTITY DEFAULT sends only the primary key (id): "email" and "name" are unknown there, so its ' +
          'updates and deletes could not be invalidated: run refuses to start | ALTER TABLE public.users REPLICA IDENTITY FULL;  ' +
          '(or set source.replicaIdentity: full, or give the rule a fallback)',
      ],
    },
    {
      name: 'old rows read non-key columns, with a fallback: a warning',
      rules: [{ table: 'users', invalidate: ['user:email:{email}'], fallback: { bump: ['users:version'] } }],
      facts: database(),
      lines: [/^warn .* so its updates and deletes run the fallback instead \| ALTER TABLE public.users REPLICA IDENTITY FULL;$/],
    },
    {
      name: 'only deletes read old rows',
      rules: [{ table: 'users', on: ['insert', 'delete'], invalidate: ['user:email:{email}'] }],
      facts: database(),
      lines: [/so its deletes could not be invalidated: run refuses to start/],
    },
    {
      name: 'inserts alone never read old rows',
      rules: [{ table: 'users', on: ['insert'], invalidate: ['user:email:{email}'] }],
      facts: database(),
      lines: [/^ok table public.users: column email exists; REPLICA IDENTITY DEFAULT/],
    },
    {
      name: 'REPLICA IDENTITY USING INDEX covers its columns only',
      rules: [{ table: 'users', invalidate: ['user:email:{email}', 'user:name:{name}'] }],
      facts: database({ tables: [table(USERS, relation({ replicaIdentity: 'index', identityIndex: ['email'] }))] }),
      lines: [/renders "user:name:{name}" from old rows, but REPLICA IDENTITY USING INDEX sends only the index columns \(email\): "name" is unknown/],
    },
    {
      name: 'when.changed on a non-key column cannot filter',
      rules: [{ table: 'users', when: { changed: ['name'] }, invalidate: ['user:{id}'] }],
      facts: database(),
      lines: [
        'warn table public.users: mappings/app.yaml#rules[0] when.changed cannot skip updates: the old value of "name" is ' +
          'unknown (REPLICA IDENTITY DEFAULT sends only the primary key (id)), so every update counts as changed | ' +
          'ALTER TABLE public.users REPLICA IDENTITY FULL;  (or accept the extra invalidations)',
      ],
    },
    {
      name: 'no primary key and identity DEFAULT',
      rules: [{ table: 'users', invalidate: ['user:{id}'] }],
      facts: database({ tables: [table(USERS, relation({ primaryKey: [] }))] }),
      lines: [
        'fail table public.users has no replica identity (REPLICA IDENTITY DEFAULT and no primary key): once it is published, ' +
          'PostgreSQL rejects every UPDATE and DELETE on it | ALTER TABLE public.users REPLICA IDENTITY FULL;  (or add a primary key)',
      ],
    },
    {
      name: 'REPLICA IDENTITY NOTHING',
      rules: [{ table: 'users', invalidate: ['user:{id}'] }],
      facts: database({ tables: [table(USERS, relation({ replicaIdentity: 'nothing' }))] }),
      lines: [/^fail table public.users has no replica identity \(REPLICA IDENTITY NOTHING\)/],
    },
    {
      name: 'a generated column',
      rules: [{ table: 'users', invalidate: ['user:{slug}'] }],
      facts: database({
        tables: [
          table(USERS, relation({ replicaIdentity: 'full', columns: [{ name: 'slug', generated: true }] })),
        ],
      }),
      lines: [/^fail table public.users: mappings\/app.yaml#rules\[0\] "user:\{slug\}" uses generated column "slug", which logical replication does not send/],
    },
    {
      name: 'a table that does not exist, with one that differs in case',
      rules: [{ table: 'Users', invalidate: ['user:{id}'] }],
      facts: database({ tables: [table('public.Users', null, [{ schema: 'public', table: 'users' }])] }),
      lines: [
        'fail table public."Users" (mappings/app.yaml#rules[0]) does not exist in database "app" | ' +
          'correct the "table" of the rule: did you mean public.users?',
      ],
    },
    {
      name: 'a view',
      rules: [{ table: 'active_users', invalidate: ['user:{id}'] }],
      facts: database({ tables: [table('public.active_users', relation({ kind: 'view' }))] }),
      lines: [/^fail public.active_users \(mappings\/app.yaml#rules\[0\]\) is a view, not a table/],
    },
    {
      name: 'a name with capitals and spaces',
      rules: [{ table: 'public.My Table', invalidate: ['m:{Full Name}'] }],
      facts: database({
        tables: [
          table(
            'public.My Table',
            relation({
              sql: 'public."My Table"',
              primaryKey: ['Id'],
              columns: [
                { name: 'Id', generated: false },
                { name: 'Full Name', generated: false },
              ],
            }),
          ),
        ],
      }),
      lines: [
        'fail table public."My Table": mappings/app.yaml#rules[0] renders "m:{Full Name}" from old rows, but REPLICA IDENTITY ' +
          'DEFAULT sends only the primary key (Id): "Full Name" is unknown there, so its updates and deletes could not be invalidated: run refuses to start | ' +
          'ALTER TABLE public."My Table" REPLICA IDENTITY FULL;  (or set source.replicaIdentity: full, or give the rule a fallback)',
      ],
    },
    {
      name: 'partitions without a replica identity',
      rules: [{ table: 'events', invalidate: ['e:{id}'] }],
      facts: database({
        tables: [
          table(
            'public.events',
            relation({
              sql: 'public.events',
              kind: 'partitioned table',
              primaryKey: [],
              partitions: [
                { sql: 'public.events_1', replicaIdentity: 'default', primaryKey: [], identityIndex: null },
                { sql: 'public.events_2', replicaIdentity: 'full', primaryKey: [], identityIndex: null },
              ],
            }),
          ),
        ],
      }),
      lines: [/^fail table public.events has no replica identity \(none on 1 partition\).* \| ALTER TABLE public.events_1 REPLICA IDENTITY FULL;  \(or add a primary key\)$/],
    },
    {
      name: 'partitions each with FULL identity',
      rules: [{ table: 'events', invalidate: ['e:{name}'] }],
      facts: database({
        tables: [
          table(
            'public.events',
            relation({
              kind: 'partitioned table',
              partitions: [
                { sql: 'public.events_1', replicaIdentity: 'full', primaryKey: ['id'], identityIndex: null },
                { sql: 'public.events_2', replicaIdentity: 'full', primaryKey: ['id'], identityIndex: null },
              ],
            }),
          ),
        ],
      }),
      lines: ['ok table public.events: column name exists; REPLICA IDENTITY FULL on every partition'],
    },
    {
      name: 'a lookup parameter is read from old rows too',
      rules: [
        {
          table: 'users',
          lookup: { org: { sql: 'SELECT slug FROM orgs WHERE id = $1', params: ['name'], timeoutMs: 1000, retries: 0 } },
          invalidate: ['org:{org.slug}'],
        },
      ],
      facts: database(),
      lines: [/^fail table public.users: mappings\/app.yaml#rules\[0\] renders "org:\{org.slug\}" from old rows, .*"name" is unknown there/],
    },
    {
      name: 'a lookup parameter that does not exist',
      rules: [
        {
          table: 'users',
          lookup: { org: { sql: 'SELECT slug FROM orgs WHERE id = $1', params: ['org_id'], timeoutMs: 1000, retries: 0 } },
          invalidate: ['org:{org.slug}'],
        },
      ],
      facts: database({ tables: [table(USERS, full)] }),
      lines: [/^fail table public.users: column "org_id" used by mappings\/app.yaml#rules\[0\] lookup "org" params does not exist/],
    },
  ];

  it.each(cases)('$name', ({ rules, facts, lines }) => {
    const found = render(tableChecks(facts, compile(rules)));
    expect(found).toHaveLength(lines.length);
    lines.forEach((e, i) => (typeof e === 'string' ? expect(found[i]).toBe(e) : expect(found[i]).toMatch(e)));
  });

  it('on PostgreSQL 18 a generated column is not reported', () => {
    const facts = database({
      server: { ...database().server, versionNum: 180000 },
      tables: [table(USERS, relation({ replicaIdentity: 'full', columns: [{ name: 'slug', generated: true }] }))],
    });
    expect(render(tableChecks(facts, compile([{ table: 'users', invalidate: ['u:{slug}'] }])))[0]).toMatch(/^ok /);
  });
});

describe('check: lookup queries', () => {
  const cases: Array<{ name: string; error: { code: string | null; message: string } | null; line: RegExp }> = [
    { name: 'plans', error: null, line: /^ok mappings\/app.yaml#rules\[0\] lookup "author": the query plans, with read access for role "cdc"$/ },
    {
      name: 'no privilege on a table',
      error: { code: '42501', message: 'permission denied for table users' },
      line: /^fail .*lookup "author": the query does not plan: permission denied for table users \| GRANT SELECT ON TABLE users TO cdc;/,
    },
    {
      name: 'no privilege on a schema',
      error: { code: '42501', message: 'permission denied for schema app' },
      line: /\| GRANT USAGE ON SCHEMA app TO cdc;$/,
    },
    {
      name: 'a parameter of unknown type',
      error: { code: '42P18', message: 'could not determine data type of parameter $1' },
      line: /\| give each parameter a type in lookup.author.sql of mappings\/app.yaml#rules\[0\], e.g. \$1::bigint$/,
    },
    {
      name: 'a misspelt column',
      error: { code: '42703', message: 'column "nme" does not exist' },
      line: /^fail .*: column "nme" does not exist \| correct lookup.author.sql of mappings\/app.yaml#rules\[0\]$/,
    },
  ];

  it.each(cases)('$name', ({ error, line }) => {
    const facts = database({ lookups: [{ rule: 'mappings/app.yaml#rules[0]', alias: 'author', error }] });
    expect(render(lookupChecks(facts))).toEqual([expect.stringMatching(line)]);
  });
});
