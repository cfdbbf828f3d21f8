import { describe, expect, it } from 'vitest';
import type { PostgresReached, PublicationFacts } from '../../src/commands/check/facts.js';
import { publicationChecks } from '../../src/commands/check/publication-checks.js';
import { compile, database, relation, render, table } from './check-fixtures.js';

const PUB = 'cdc_invalidator';
const RULES = compile([
  { table: 'users', invalidate: ['user:{id}', 'user:email:{email}'] },
  { table: 'comments', invalidate: ['comment:{id}'] },
]);
const TABLES = [
  table('public.users', relation({ replicaIdentity: 'full' })),
  table('public.comments', relation({ sql: 'public.comments', replicaIdentity: 'full' })),
];

const published = (name: string, columns = ['id', 'name', 'email'], rowFilter: string | null = null) => {
  const [schema, tableName] = name.split('.') as [string, string];
  return { schema, table: tableName, columns, rowFilter };
};

function publication(o: Partial<PublicationFacts> = {}): PublicationFacts {
  return {
    name: PUB,
    sql: PUB,
    owner: 'app',
    owned: false,
    allTables: false,
    viaRoot: false,
    publishes: { insert: true, update: true, delete: true, truncate: true },
    tables: [published('public.users'), published('public.comments')],
    ...o,
  };
}

const role = (o: Partial<PostgresReached['role']>) => ({ ...database().role, ...o });

describe('check: the publication', () => {
  const cases: Array<{ name: string; facts: PostgresReached; lines: Array<string | RegExp> }> = [
    {
      name: 'missing, and the role may create it',
      facts: database({ tables: TABLES }),
      lines: ['ok publication "cdc_invalidator" does not exist yet: the worker creates it at start, FOR TABLE public.users and public.comments'],
    },
    {
      name: 'missing, and the role owns neither the tables nor CREATE on the database',
      facts: database({
        role: role({ createOnDatabase: false }),
        tables: TABLES.map((t) => ({ ...t, relation: { ...t.relation!, owned: false } })),
      }),
      lines: [
        'fail publication "cdc_invalidator" does not exist, and role "cdc" cannot create it: it lacks CREATE on database "app"; ' +
          'it does not own public.users (owner "app") and public.comments (owner "app") | ' +
          'create it as the owner of the tables: CREATE PUBLICATION cdc_invalidator FOR TABLE public.users, public.comments;',
      ],
    },
    {
      name: 'missing, and the role owns the tables but lacks CREATE on the database',
      facts: database({ role: role({ createOnDatabase: false }), tables: TABLES }),
      lines: [
        'fail publication "cdc_invalidator" does not exist, and role "cdc" cannot create it: it lacks CREATE on database "app" | ' +
          'GRANT CREATE ON DATABASE app TO cdc;  (or create it yourself: CREATE PUBLICATION cdc_invalidator FOR TABLE public.users, public.comments;)',
      ],
    },
    {
      name: 'missing, and a superuser creates anything',
      facts: database({ role: role({ superuser: true, createOnDatabase: false }), tables: TABLES.map((t) => ({ ...t, relation: { ...t.relation!, owned: false } })) }),
      lines: [/^ok publication "cdc_invalidator" does not exist yet/],
    },
    {
      name: 'missing, with a partitioned table',
      facts: database({ tables: [table('public.events', relation({ sql: 'public.events', kind: 'partitioned table' }))] }),
      lines: [/^fail .*publishes the changes of partitioned public.events under the partitions' names.* WITH \(publish_via_partition_root = true\);$/],
    },
    {
      name: 'complete',
      facts: database({ tables: TABLES, publication: publication() }),
      lines: ['ok publication "cdc_invalidator" publishes insert, update, delete and truncate', 'ok publication "cdc_invalidator" covers the 2 mapped tables'],
    },
    {
      name: 'FOR ALL TABLES',
      facts: database({ tables: TABLES, publication: publication({ allTables: true }) }),
      lines: [/^ok /, 'ok publication "cdc_invalidator" covers the 2 mapped tables (FOR ALL TABLES)'],
    },
    {
      name: 'not publishing truncate and delete',
      facts: database({ tables: TABLES, publication: publication({ publishes: { insert: true, update: true, delete: false, truncate: false } }) }),
      lines: [
        'fail publication "cdc_invalidator" does not publish delete and truncate: those changes would never be invalidated, so the ' +
          "worker refuses to start | ALTER PUBLICATION cdc_invalidator SET (publish = 'insert, update, delete, truncate');",
        /^ok /,
      ],
    },
    {
      name: 'a mapped table missing, and the role may add it: the worker does',
      facts: database({ tables: TABLES, publication: publication({ owned: true, tables: [published('public.users')] }) }),
      lines: [
        /^ok /,
        'warn publication "cdc_invalidator" does not include public.comments: the worker adds it at start | ' +
          'ALTER PUBLICATION cdc_invalidator ADD TABLE public.comments;  (to add now)',
      ],
    },
    {
      name: 'a mapped table missing, and the role may not add it',
      facts: database({ tables: TABLES, publication: publication({ tables: [published('public.users')] }) }),
      lines: [
        /^ok /,
        'fail publication "cdc_invalidator" does not include public.comments, and role "cdc" cannot add it: it does not own the ' +
          'publication (owner "app"). The worker would stop at start | as the owner of the publication and the tables: ' +
          'ALTER PUBLICATION cdc_invalidator ADD TABLE public.comments;',
      ],
    },
    {
      name: 'a row filter',
      facts: database({ tables: TABLES, publication: publication({ tables: [published('public.users', undefined, '(id > 10)'), published('public.comments')] }) }),
      lines: [
        /^ok /,
        /^ok /,
        /^fail publication "cdc_invalidator" publishes only the rows of public.users WHERE \(id > 10\): .* \| publish the table without a row filter: BEGIN; ALTER PUBLICATION cdc_invalidator DROP TABLE public.users; ALTER PUBLICATION cdc_invalidator ADD TABLE public.users; COMMIT;$/,
      ],
    },
    {
      name: 'a column list without a column the rules use',
      facts: database({ tables: TABLES, publication: publication({ tables: [published('public.users', ['id', 'name']), published('public.comments')] }) }),
      lines: [/^ok /, /^ok /, /^fail publication "cdc_invalidator" sends only some columns of public.users: column "email" that the rules use is never sent/],
    },
    {
      name: 'a partitioned table without publish_via_partition_root',
      facts: database({
        tables: [table('public.events', relation({ sql: 'public.events', kind: 'partitioned table' }))],
        publication: publication({ tables: [published('public.events_1')] }),
      }),
      lines: [
        /^ok /,
        "fail public.events is partitioned, and publication \"cdc_invalidator\" publishes their changes under the partitions' names, " +
          'which no rule maps | ALTER PUBLICATION cdc_invalidator SET (publish_via_partition_root = true);',
      ],
    },
  ];

  it.each(cases)('$name', ({ facts, lines }) => {
    const found = render(publicationChecks(facts, PUB, RULES));
    expect(found).toHaveLength(lines.length);
    lines.forEach((e, i) => (typeof e === 'string' ? expect(found[i]).toBe(e) : expect(found[i]).toMatch(e)));
  });

  it('leaves tables that do not exist to the table checks', () => {
    const facts = database({ tables: [table('public.users', null)], publication: publication({ tables: [] }) });
    expect(render(publicationChecks(facts, PUB, RULES))).toEqual(['ok publication "cdc_invalidator" publishes insert, update, delete and truncate']);
  });
});
